// Package storagetest is a conformance suite for goka table storages
// (github.com/lovoo/goka/storage.Storage) as kcqrs projections use them. Every
// storage implementation runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(dir string) storage.Storage { return NewMyStorage(dir) })
//	}
//
// New must return a closed storage in dir; Run opens it, and reopens a new
// one on the same dir to check what survives a restart.
package storagetest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/lovoo/goka/storage"
)

// Run runs every conformance check, each in a fresh directory.
func Run(t *testing.T, newStorage func(dir string) storage.Storage) {
	checks := []struct {
		name string
		fn   func(*testing.T, func(string) storage.Storage)
	}{
		{"GetMissing", getMissing},
		{"SetGetHasDelete", setGetHasDelete},
		{"Offset", offset},
		{"Reopen", reopen},
		{"IteratorOrderSkipsOffset", iteratorOrder},
		{"IteratorRange", iteratorRange},
		{"IteratorPrefix", iteratorPrefix},
		{"IteratorSeek", iteratorSeek},
		{"IteratorSnapshot", iteratorSnapshot},
		{"ConcurrentReaders", concurrentReaders},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newStorage) })
	}
}

func open(t *testing.T, dir string, newStorage func(string) storage.Storage) storage.Storage {
	t.Helper()
	s := newStorage(dir)
	if err := s.Open(); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func getMissing(t *testing.T, ns func(string) storage.Storage) {
	s := open(t, t.TempDir(), ns)
	v, err := s.Get("nope")
	if err != nil || v != nil {
		t.Fatalf("Get(missing) = %q, %v; want nil, nil", v, err)
	}
	ok, err := s.Has("nope")
	if err != nil || ok {
		t.Fatalf("Has(missing) = %v, %v", ok, err)
	}
	must(t, s.Delete("nope"))
}

func setGetHasDelete(t *testing.T, ns func(string) storage.Storage) {
	s := open(t, t.TempDir(), ns)
	must(t, s.Set("k", []byte("v1")))
	must(t, s.Set("k", []byte("v2")))
	must(t, s.Set("empty", []byte{}))
	if v, err := s.Get("k"); err != nil || string(v) != "v2" {
		t.Fatalf("Get after overwrite = %q, %v", v, err)
	}
	if v, err := s.Get("empty"); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Get(empty value) = %#v, %v; want a non-nil empty slice", v, err)
	}
	if ok, err := s.Has("k"); err != nil || !ok {
		t.Fatalf("Has = %v, %v", ok, err)
	}
	// The returned slice must be the caller's: writing to it changes nothing.
	v, _ := s.Get("k")
	v[0] = 'X'
	if v, _ := s.Get("k"); string(v) != "v2" {
		t.Fatalf("value changed through a returned slice: %q", v)
	}
	must(t, s.Delete("k"))
	if v, err := s.Get("k"); err != nil || v != nil {
		t.Fatalf("Get after Delete = %q, %v", v, err)
	}
}

func offset(t *testing.T, ns func(string) storage.Storage) {
	s := open(t, t.TempDir(), ns)
	if o, err := s.GetOffset(-2); err != nil || o != -2 {
		t.Fatalf("GetOffset on a new store = %d, %v; want the default -2", o, err)
	}
	must(t, s.SetOffset(41))
	must(t, s.MarkRecovered())
	must(t, s.SetOffset(42))
	if o, err := s.GetOffset(-2); err != nil || o != 42 {
		t.Fatalf("GetOffset = %d, %v; want 42", o, err)
	}
	// The offset is no entry.
	for _, k := range []string{"__offset", "o", ""} {
		if v, _ := s.Get(k); v != nil {
			t.Fatalf("offset visible as entry %q", k)
		}
	}
}

func reopen(t *testing.T, ns func(string) storage.Storage) {
	dir := t.TempDir()
	s := ns(dir)
	must(t, s.Open())
	must(t, s.Set("a", []byte("1")))
	must(t, s.Set("b", []byte("2")))
	must(t, s.Delete("b"))
	must(t, s.MarkRecovered())
	must(t, s.SetOffset(7))
	must(t, s.Close())
	must(t, s.Close()) // twice is harmless

	s2 := open(t, dir, ns)
	if v, err := s2.Get("a"); err != nil || string(v) != "1" {
		t.Fatalf("after reopen Get(a) = %q, %v", v, err)
	}
	if v, _ := s2.Get("b"); v != nil {
		t.Fatalf("deleted key back after reopen: %q", v)
	}
	if o, err := s2.GetOffset(-1); err != nil || o != 7 {
		t.Fatalf("after reopen offset = %d, %v; want 7", o, err)
	}
}

func fill(t *testing.T, s storage.Storage, keys ...string) {
	t.Helper()
	for _, k := range keys {
		must(t, s.Set(k, []byte("v-"+k)))
	}
}

func drain(t *testing.T, it storage.Iterator) []string {
	t.Helper()
	defer it.Release()
	var out []string
	for it.Next() {
		v, err := it.Value()
		must(t, err)
		if want := "v-" + string(it.Key()); string(v) != want {
			t.Fatalf("iterator value of %q = %q, want %q", it.Key(), v, want)
		}
		out = append(out, string(it.Key()))
	}
	must(t, it.Err())
	return out
}

func eq(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func iteratorOrder(t *testing.T, ns func(string) storage.Storage) {
	s := open(t, t.TempDir(), ns)
	fill(t, s, "b", "a", "c", "__offset_like", "ab")
	must(t, s.SetOffset(3))
	it, err := s.Iterator()
	must(t, err)
	eq(t, "Iterator", drain(t, it), "__offset_like", "a", "ab", "b", "c")
}

func iteratorRange(t *testing.T, ns func(string) storage.Storage) {
	s := open(t, t.TempDir(), ns)
	fill(t, s, "a", "b", "ba", "c", "d")
	it, err := s.IteratorWithRange([]byte("b"), []byte("d"))
	must(t, err)
	eq(t, "[b,d)", drain(t, it), "b", "ba", "c")
}

func iteratorPrefix(t *testing.T, ns func(string) storage.Storage) {
	s := open(t, t.TempDir(), ns)
	fill(t, s, "user1", "user1:x", "user2", "v")
	it, err := s.IteratorWithRange([]byte("user1"), nil)
	must(t, err)
	eq(t, "prefix user1", drain(t, it), "user1", "user1:x")
}

func iteratorSeek(t *testing.T, ns func(string) storage.Storage) {
	s := open(t, t.TempDir(), ns)
	fill(t, s, "a", "c", "e")
	it, err := s.Iterator()
	must(t, err)
	// As LevelDB's (goka's merge iterator relies on it): Seek positions on
	// the first pair at or after the key, and Next moves past it.
	if !it.Seek([]byte("b")) {
		t.Fatal("Seek(b) found nothing")
	}
	if k := string(it.Key()); k != "c" {
		t.Fatalf("Key after Seek(b) = %q, want c", k)
	}
	eq(t, "Next after Seek(b)", drain(t, it), "e")
	it, err = s.Iterator()
	must(t, err)
	if it.Seek([]byte("f")) {
		t.Fatal("Seek past the end reported a pair")
	}
	it.Release()
}

func iteratorSnapshot(t *testing.T, ns func(string) storage.Storage) {
	s := open(t, t.TempDir(), ns)
	fill(t, s, "a", "b")
	it, err := s.Iterator()
	must(t, err)
	fill(t, s, "c")
	must(t, s.Delete("a"))
	eq(t, "snapshot", drain(t, it), "a", "b")
}

func concurrentReaders(t *testing.T, ns func(string) storage.Storage) {
	s := open(t, t.TempDir(), ns)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				v, err := s.Get("k")
				if err != nil || (v != nil && !bytes.HasPrefix(v, []byte("v"))) {
					t.Errorf("concurrent Get = %q, %v", v, err)
					return
				}
				if it, err := s.Iterator(); err == nil {
					for it.Next() {
					}
					it.Release()
				}
			}
		}()
	}
	for i := 0; i < 500; i++ {
		must(t, s.Set("k", []byte(fmt.Sprintf("v%d", i))))
		must(t, s.Set(fmt.Sprintf("k%03d", i), []byte("v")))
	}
	close(stop)
	wg.Wait()
}
