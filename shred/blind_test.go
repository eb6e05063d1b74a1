package shred

import (
	"errors"
	"strings"
	"testing"
)

// kmsWithoutLookup is a KeyWrapper written before LookupKeyer existed.
type kmsWithoutLookup struct{}

func (kmsWithoutLookup) ID() string                            { return "kms" }
func (kmsWithoutLookup) Wrap(string, []byte) ([]byte, error)   { return nil, errors.New("no") }
func (kmsWithoutLookup) Unwrap(string, []byte) ([]byte, error) { return nil, errors.New("no") }

// TestBlindIndex: a name depends on the value, the master key and the
// purpose only (so writer and reader of an index agree), shows nothing of
// the value, and a wrapper without a lookup key says so.
func TestBlindIndex(t *testing.T) {
	m1, m1again, m2 := testMaster(t, 1), testMaster(t, 1), testMaster(t, 2)
	mustIndex := func(w KeyWrapper, purpose string) *BlindIndex {
		t.Helper()
		b, err := NewBlindIndex(w, purpose)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, aAgain := mustIndex(m1, "owners"), mustIndex(m1again, "owners")
	if a.Sum("Ada Lovelace") != aAgain.Sum("Ada Lovelace") {
		t.Fatal("two instances of the same master key and purpose disagree")
	}
	name := a.Sum("Ada Lovelace")
	if strings.Contains(name, "Ada") || len(name) != 22 || strings.ContainsAny(name, "/+=") {
		t.Fatalf("name %q: shows the value, or is not 22 characters of base64url", name)
	}
	for _, other := range []string{a.Sum("Ada Lovelace "), a.Sum("ada lovelace"), mustIndex(m1, "emails").Sum("Ada Lovelace"), mustIndex(m2, "owners").Sum("Ada Lovelace")} {
		if other == name {
			t.Fatal("another value, purpose or master key gives the same name")
		}
	}
	lk1, _ := m1.LookupKey("owners")
	if strings.Contains(string(lk1), string(m1.lookupPRK)) || len(lk1) != KeyLen {
		t.Fatalf("lookup key of %d bytes", len(lk1))
	}
	if _, err := NewBlindIndex(kmsWithoutLookup{}, "owners"); !errors.Is(err, ErrNoLookupKey) {
		t.Fatalf("a wrapper without LookupKey: %v, want ErrNoLookupKey", err)
	}
}

// BenchmarkKeyringSealOpenMiss is the cipher work of a personal value that
// is not the subject's last one (a new account's owner, or a changed value):
// a seal and an open that the keyring's last-pair cache cannot answer.
func BenchmarkKeyringSealOpenMiss(b *testing.B) {
	r := testRing(b, "account/acc-1")
	vals := []string{"Bench Owner One", "Bench Owner Two"}
	sealed := make([]string, 2)
	for i, v := range vals {
		sealed[i], _ = r.Seal("account/acc-1", v)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := r.Seal("account/acc-1", vals[i%2]); err != nil {
			b.Fatal(err)
		}
		if _, err := r.Open("account/acc-1", sealed[i%2]); err != nil {
			b.Fatal(err)
		}
	}
}
