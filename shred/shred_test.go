package shred

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/schemas"
)

func testMaster(t testing.TB, b byte) *MasterKey {
	t.Helper()
	m, err := NewMasterKey(bytes.Repeat([]byte{b}, KeyLen))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testRing(t testing.TB, subjects ...string) *Keyring {
	t.Helper()
	r := NewKeyring()
	for _, s := range subjects {
		k, err := NewDataKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Put(s, k); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestSealOpenRoundTripAndErasure(t *testing.T) {
	r := testRing(t, "account/a1", "account/a2")
	const canary = "CANARY-Ada Lovelace-7f3e"
	s, err := r.Seal("account/a1", canary)
	if err != nil {
		t.Fatal(err)
	}
	if !IsSealed(s) || strings.Contains(s, canary) || strings.Contains(s, "Ada") {
		t.Fatalf("sealed text %q shows the plaintext or lacks the prefix", s)
	}
	if got, err := r.Open("account/a1", s); err != nil || got != canary {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// The package-level Open agrees with the keyring's.
	if got, err := Open("account/a1", r.Lookup, s); err != nil || got != canary {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// Another subject's key, or the value copied to another subject: an error, never "erased".
	if _, err := r.Open("account/a2", s); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Open under another subject: %v, want ErrMalformed", err)
	}
	// Unsealed text (written before the field was marked) passes.
	if got, err := r.Open("account/a1", "plain Bob"); err != nil || got != "plain Bob" {
		t.Fatalf("Open of plain text = %q, %v", got, err)
	}
	r.Delete("account/a1")
	got, err := r.Open("account/a1", s)
	if !errors.Is(err, ErrErased) || got != Erased {
		t.Fatalf("after erasure Open = %q, %v; want %q, ErrErased", got, err, Erased)
	}
	// What is written for an erased subject is the erased value, never the
	// plaintext.
	if got, err := r.Seal("account/a1", "x"); err != nil || got != Erased {
		t.Fatalf("Seal after erasure = %q, %v; want %q", got, err, Erased)
	}
	if _, err := r.Seal("account/never", "x"); err == nil {
		t.Fatal("Seal without a key succeeded")
	}
}

func TestKeyRecordRoundTripAndWrongMasterKey(t *testing.T) {
	m1, m2 := testMaster(t, 1), testMaster(t, 2)
	k, _ := NewDataKey()
	rec, err := EncodeKeyRecord(m1, "account/a1", k)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rec, k.Key[:]) {
		t.Fatal("the key record holds the data key in clear")
	}
	got, err := DecodeKeyRecord(m1, "account/a1", rec)
	if err != nil || got != k {
		t.Fatalf("DecodeKeyRecord = %v, %v", got, err)
	}
	var wm *WrongMasterKeyError
	if _, err := DecodeKeyRecord(m2, "account/a1", rec); !errors.As(err, &wm) || wm.Stored != m1.ID() || wm.Have != m2.ID() {
		t.Fatalf("with another master key: %v, want a WrongMasterKeyError naming both ids", err)
	}
	// Same id but the wrapped bytes do not open (a corrupted record, or
	// moved to another subject): also a WrongMasterKeyError with the cause.
	if _, err := DecodeKeyRecord(m1, "account/a2", rec); !errors.As(err, &wm) || wm.Err == nil {
		t.Fatalf("under another subject: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("x"), []byte(keyRecordMagic), []byte(keyRecordMagic + "\xff")} {
		if _, err := DecodeKeyRecord(m1, "s", bad); !errors.Is(err, ErrBadKeyRecord) {
			t.Errorf("DecodeKeyRecord(%q) = %v, want ErrBadKeyRecord", bad, err)
		}
	}
}

func TestLoadMasterKey(t *testing.T) {
	dir := t.TempDir()
	hexKey := strings.Repeat("ab", KeyLen)
	file := filepath.Join(dir, "mk")
	if err := os.WriteFile(file, []byte(hexKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := LoadMasterKey(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(MasterKeyEnv, "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=") // the same 32 bytes in base64
	b, err := LoadMasterKey("")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() != b.ID() {
		t.Fatalf("hex and base64 forms of one key give ids %s and %s", a.ID(), b.ID())
	}
	if strings.Contains(a.ID(), "abab") {
		t.Fatalf("the id %s shows the key", a.ID())
	}
	t.Setenv(MasterKeyEnv, "short")
	if _, err := LoadMasterKey(""); err == nil {
		t.Fatal("a short master key was accepted")
	}
	if _, err := LoadMasterKey(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

type person struct {
	Name  string
	Email *string
	N     int64
}

func TestFieldsSealCopiesAndOpensInPlace(t *testing.T) {
	f := NewFields(reflect.TypeOf(person{}), []schemas.PersonalField{{Name: "name", Index: 0}, {Name: "email", Index: 1, Pointer: true}})
	r := testRing(t, "s")
	email := "ada@example.org"
	in := person{Name: "Ada", Email: &email, N: 7}
	out, err := f.Seal(r, "s", in)
	if err != nil {
		t.Fatal(err)
	}
	sealed := out.(person)
	if in.Name != "Ada" || *in.Email != email {
		t.Fatal("Seal changed its input")
	}
	if !IsSealed(sealed.Name) || !IsSealed(*sealed.Email) || sealed.N != 7 {
		t.Fatalf("sealed %+v", sealed)
	}
	pout, err := f.Seal(r, "s", &in)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pout.(*person); !ok {
		t.Fatalf("Seal of a pointer gave a %T", pout)
	}
	erased, err := f.Open(r, "s", reflect.ValueOf(&sealed))
	if err != nil || erased || sealed.Name != "Ada" || *sealed.Email != email {
		t.Fatalf("Open: %+v %v %v", sealed, erased, err)
	}
	again, _ := f.Seal(r, "s", in)
	sealed = again.(person)
	r.Delete("s")
	erased, err = f.Open(r, "s", reflect.ValueOf(&sealed))
	if err != nil || !erased || sealed.Name != Erased || *sealed.Email != Erased || sealed.N != 7 {
		t.Fatalf("Open after erasure: %+v %v %v", sealed, erased, err)
	}
	var none *Fields
	if v, err := none.Seal(r, "s", in); err != nil || v.(person).Name != "Ada" {
		t.Fatal("a nil Fields changed the value")
	}
}

// FuzzOpen: the envelope decoder never panics, never calls a value of a
// subject that has a key "erased", and opens what Seal wrote.
func FuzzOpen(f *testing.F) {
	r := testRing(f, "s")
	good, _ := r.Seal("s", "hello")
	f.Add(good)
	f.Add(Prefix)
	f.Add(Prefix + "AAAA")
	f.Add("plain")
	f.Add(good[:len(good)-3])
	f.Fuzz(func(t *testing.T, s string) {
		got, err := r.Open("s", s)
		if errors.Is(err, ErrErased) || got == Erased && IsSealed(s) {
			t.Fatalf("Open(%q) says erased while the key exists", s)
		}
		if !IsSealed(s) && (err != nil || got != s) {
			t.Fatalf("Open of plain %q = %q, %v", s, got, err)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Open(%q): unexpected error kind %v", s, err)
		}
		if _, err := Open("s", r.Lookup, s); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("package Open(%q): %v", s, err)
		}
		// Whatever decodes seals and opens again to itself.
		if err == nil {
			again, err := r.Seal("s", got)
			if err != nil {
				t.Fatal(err)
			}
			back, err := r.Open("s", again)
			if err != nil || back != got {
				t.Fatalf("round trip of %q gave %q, %v", got, back, err)
			}
		}
	})
}

// TestKeyringUnknownSubjectIsAnErrorNotErased: only an erasure the keyring
// was told of reads as Erased; a subject it knows nothing of (keys not
// loaded, or lost) is ErrNoKey, and Forget undoes a key or an erasure.
func TestKeyringUnknownSubjectIsAnErrorNotErased(t *testing.T) {
	r := testRing(t, "s")
	sealed, err := r.Seal("s", "Ada")
	if err != nil {
		t.Fatal(err)
	}
	r.Forget("s")
	if got, err := r.Open("s", sealed); !errors.Is(err, ErrNoKey) || got == Erased {
		t.Fatalf("unknown subject: %q, %v; want ErrNoKey", got, err)
	}
	if r.Has("s") || r.Erased("s") {
		t.Fatal("Forget left something")
	}
	r.Delete("s")
	if got, err := r.Open("s", sealed); !errors.Is(err, ErrErased) || got != Erased {
		t.Fatalf("erased subject: %q, %v", got, err)
	}
	if !r.Erased("s") || r.Has("s") {
		t.Fatal("Delete did not mark the subject erased")
	}
	if got, err := r.Seal("s", "x"); err != nil || got != Erased {
		t.Fatalf("sealed for an erased subject: %q, %v", got, err)
	}
	r.Forget("s")
	if r.Erased("s") {
		t.Fatal("Forget kept the erasure")
	}
	if !IsErasedMarker(ErasedMarker) || IsErasedMarker(nil) || IsErasedMarker([]byte("kcqrs-key1")) {
		t.Fatal("IsErasedMarker")
	}
}

// TestKeyringConcurrentEraseWhileOpening: erasures while other goroutines
// seal and open (the query API follows the keys topic while it serves) are
// race-free and never panic; every answer is the plaintext or Erased.
func TestKeyringConcurrentEraseWhileOpening(t *testing.T) {
	r := testRing(t, "s")
	sealed, _ := r.Seal("s", "Ada")
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 2000; i++ {
				got, err := r.Open("s", sealed)
				if err != nil && !errors.Is(err, ErrErased) || got != "Ada" && got != Erased {
					t.Errorf("Open = %q, %v", got, err)
					return
				}
				_, _ = r.Seal("s", "Ada")
			}
		}()
	}
	r.Delete("s")
	for g := 0; g < 4; g++ {
		<-done
	}
	if got, _ := r.Open("s", sealed); got != Erased {
		t.Fatalf("after Delete: %q", got)
	}
}

// TestEraseToken: a token opens only with its master key and for its subject.
func TestEraseToken(t *testing.T) {
	m1, m2 := testMaster(t, 1), testMaster(t, 2)
	tok, err := EraseToken(m1, "account/a1")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckEraseToken(m1, "account/a1", tok); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		w   KeyWrapper
		s   string
		tok []byte
	}{{m2, "account/a1", tok}, {m1, "account/a2", tok}, {m1, "account/a1", nil}, {m1, "account/a1", []byte("{}")}, {m1, "account/a1", tok[:len(tok)-1]}} {
		if err := CheckEraseToken(c.w, c.s, c.tok); !errors.Is(err, ErrBadEraseToken) {
			t.Errorf("CheckEraseToken(%s, %q, %x) = %v", c.w.ID(), c.s, c.tok, err)
		}
	}
}
