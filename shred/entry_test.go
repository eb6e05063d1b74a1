package shred

import (
	"errors"
	"testing"
)

// TestEntryHeldAcrossChanges: an entry held from Get never seals with a key
// the keyring no longer has: after Delete the seal is Erased, after Forget
// it is an error, after a new Put it is the new key's.
func TestEntryHeldAcrossChanges(t *testing.T) {
	r := testRing(t, "account/a1")
	e := r.Get("account/a1")
	if !e.Current() || !e.HasKey() || e.Erased() {
		t.Fatalf("fresh entry: current %v, key %v, erased %v", e.Current(), e.HasKey(), e.Erased())
	}
	if g := r.GetBytes([]byte("account/a1")); g != e {
		t.Fatal("GetBytes and Get disagree")
	}
	s1, err := r.SealEntry(e, "account/a1", "Ann")
	if err != nil || !IsSealed(s1) {
		t.Fatalf("seal: %q, %v", s1, err)
	}

	// A new key: the held entry is gone, the seal uses the new key.
	k, err := NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Put("account/a1", k); err != nil {
		t.Fatal(err)
	}
	if e.Current() {
		t.Fatal("the replaced entry is still current")
	}
	s2, err := r.SealEntry(e, "account/a1", "Ann")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := EnvelopeKeyID(s2); err != nil || id != k.ID {
		t.Fatalf("sealed with key %x (%v), want the new key %x", id, err, k.ID)
	}

	// Erased: the held entry seals as Erased, never with the old key.
	e = r.Get("account/a1")
	r.Delete("account/a1")
	if s, err := r.SealEntry(e, "account/a1", "Ann"); err != nil || s != Erased {
		t.Fatalf("seal after Delete with a held entry: %q, %v", s, err)
	}
	if e2 := r.Get("account/a1"); !e2.Erased() || e2.HasKey() || !e2.Current() {
		t.Fatal("the erasure entry")
	}

	// Forgotten: an error, not a seal.
	r2 := testRing(t, "account/b1")
	e = r2.Get("account/b1")
	r2.Forget("account/b1")
	if s, err := r2.SealEntry(e, "account/b1", "Bob"); err == nil {
		t.Fatalf("seal after Forget with a held entry: %q", s)
	}
	var none *Entry
	if none.Current() || none.HasKey() || none.Erased() || r2.Get("account/b1") != nil {
		t.Fatal("a missing entry")
	}
	if _, err := r2.Open("account/b1", s1); !errors.Is(err, ErrNoKey) {
		t.Fatalf("open of a forgotten subject: %v", err)
	}
}
