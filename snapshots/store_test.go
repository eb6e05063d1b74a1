package snapshots_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/snapshots"
	"github.com/kcqrs/kcqrs/snapshots/storetest"
)

func openStore(t *testing.T, dir string, opts snapshots.Options) *snapshots.Store {
	t.Helper()
	s, err := snapshots.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string) snapshots.KV {
		s, err := snapshots.Open(dir, snapshots.Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// TestConformanceSharedCacheSmallMemTable runs the suite again with the
// settings of a worker holding many partitions: one shared cache and a
// memtable small enough that batches get flushed to sstables and large ones
// bypass the memtable, so that reads are served from disk and cache too.
func TestConformanceSharedCacheSmallMemTable(t *testing.T) {
	cache := snapshots.NewCache(1 << 20)
	defer cache.Unref()
	storetest.Run(t, func(t *testing.T, dir string) snapshots.KV {
		s, err := snapshots.Open(dir, snapshots.Options{Cache: cache, MemTableSize: 64 << 10})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func TestPersistLargeBatches(t *testing.T) {
	// Batches larger than half the memtable take another path in Pebble
	// (applied as a memtable of their own); they must persist like others.
	dir := t.TempDir()
	opts := snapshots.Options{MemTableSize: 256 << 10}
	s := openStore(t, dir, opts)
	value := []byte(strings.Repeat("v", 1000))
	b := s.NewBatch()
	for i := range 1000 { // ~1 MB: 4 times the memtable
		b.Put([]byte{byte(i >> 8), byte(i)}, value)
	}
	b.SetCheckpoint(1000)
	if err := s.Apply(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, opts)
	if n, err := s.Count(); err != nil || n != 1000 {
		t.Fatalf("Count() = %d, %v, want 1000", n, err)
	}
	if next, ok, err := s.Checkpoint(); err != nil || !ok || next != 1000 {
		t.Fatalf("Checkpoint() = %d, %v, %v, want 1000", next, ok, err)
	}
}

func TestOpenTwiceFails(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, snapshots.Options{})
	// The same directory, spelled differently.
	for _, d := range []string{dir, dir + "/", filepath.Join(dir, "x", "..")} {
		if s2, err := snapshots.Open(d, snapshots.Options{}); err == nil {
			s2.Close()
			t.Fatalf("second Open(%q) of an open store succeeded", d)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, snapshots.Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCreatesParents(t *testing.T) {
	dir := snapshots.PartitionDir(t.TempDir(), "kcqrs-changelog", 7)
	s := openStore(t, dir, snapshots.Options{})
	if got := s.Dir(); got != dir {
		t.Fatalf("Dir() = %q, want %q", got, dir)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}

func TestOptions(t *testing.T) {
	var o snapshots.Options
	o.EnsureDefaults()
	if o.MemTableSize != snapshots.DefaultMemTableSize || o.CacheSize != snapshots.DefaultCacheSize {
		t.Fatalf("EnsureDefaults: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}

	// With a shared cache, no private cache size is defaulted.
	cache := snapshots.NewCache(1 << 20)
	defer cache.Unref()
	o = snapshots.Options{Cache: cache}
	o.EnsureDefaults()
	if o.CacheSize != 0 {
		t.Fatalf("EnsureDefaults set CacheSize %d beside a shared Cache", o.CacheSize)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}

	// Validate reports all problems at once.
	bad := snapshots.Options{Cache: cache, CacheSize: -1, MemTableSize: 4 << 30}
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad options")
	}
	for _, want := range []string{"CacheSize -1 is negative", "Cache or CacheSize", "MemTableSize"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %q does not mention %q", err, want)
		}
	}
	if _, err := snapshots.Open(t.TempDir(), bad); err == nil {
		t.Fatal("Open accepted bad options")
	}
}

func TestOpenWithReleasedCacheFails(t *testing.T) {
	cache := snapshots.NewCache(1 << 20)
	s := openStore(t, t.TempDir(), snapshots.Options{Cache: cache})
	cache.Unref()
	cache.Unref() // a second Unref does nothing
	// The open store still holds the cache: another store may join it.
	s2 := openStore(t, t.TempDir(), snapshots.Options{Cache: cache})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	// Now nobody holds it: Open must fail, not panic.
	if s3, err := snapshots.Open(t.TempDir(), snapshots.Options{Cache: cache}); err == nil {
		s3.Close()
		t.Fatal("Open with a released cache succeeded")
	}
	var nilCache *snapshots.Cache
	nilCache.Unref()
}

func TestPartitionDir(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if got, want := snapshots.PartitionDir(state, "orders-changelog", 3), filepath.Join(state, "orders-changelog", "partition-3"); got != want {
		t.Fatalf("PartitionDir = %q, want %q", got, want)
	}
	seen := map[string]string{}
	for _, topic := range []string{"a", "A", "a.b_c-d", "", ".", "..", "../x", "a/b", `a\b`, "%", "%2E", "a b"} {
		dir := snapshots.PartitionDir(state, topic, 0)
		rel, err := filepath.Rel(state, dir)
		if err != nil || !filepath.IsLocal(rel) || strings.Count(rel, string(filepath.Separator)) != 1 {
			t.Errorf("PartitionDir(%q) = %q: not one topic directory below the state directory", topic, dir)
		}
		if other, ok := seen[dir]; ok {
			t.Errorf("topics %q and %q share %q", topic, other, dir)
		}
		seen[dir] = topic
	}
	if snapshots.PartitionDir(state, "t", 1) == snapshots.PartitionDir(state, "t", 10) {
		t.Fatal("partitions 1 and 10 share a directory")
	}
}

func TestRemove(t *testing.T) {
	state := t.TempDir()
	dir := snapshots.PartitionDir(state, "changelog", 0)
	s := openStore(t, dir, snapshots.Options{})
	b := s.NewBatch()
	b.Put([]byte("a"), []byte("1"))
	b.SetCheckpoint(9)
	if err := s.Apply(b); err != nil {
		t.Fatal(err)
	}
	if err := snapshots.Remove(dir); err == nil {
		t.Fatal("Remove of an open store succeeded")
	}
	if _, _, err := s.Get([]byte("a")); err != nil {
		t.Fatalf("store broken by a refused Remove: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := snapshots.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("store directory still there: %v", err)
	}
	if err := snapshots.Remove(dir); err != nil {
		t.Fatalf("Remove of a missing store: %v", err)
	}

	// A store opened again after Remove is empty, without checkpoint.
	s = openStore(t, dir, snapshots.Options{})
	if next, ok, err := s.Checkpoint(); err != nil || ok {
		t.Fatalf("Checkpoint() after Remove = %d, %v, %v; want none", next, ok, err)
	}
	if n, err := s.Count(); err != nil || n != 0 {
		t.Fatalf("Count() after Remove = %d, %v", n, err)
	}
}

func TestRemoveRefusesOtherDirectories(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "precious.txt")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := snapshots.Remove(dir); err == nil {
		t.Fatal("Remove deleted a directory that is not a store")
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("Remove touched a non-store directory: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := snapshots.Remove(empty); err != nil {
		t.Fatalf("Remove of an empty directory: %v", err)
	}
	if err := snapshots.Remove(""); err == nil {
		t.Fatal(`Remove("") succeeded`)
	}
}

func TestBatch(t *testing.T) {
	var b snapshots.Batch // the zero value is ready
	if b.Len() != 0 || b.Size() != 0 {
		t.Fatal("zero batch not empty")
	}
	if _, ok := b.Checkpoint(); ok {
		t.Fatal("zero batch has a checkpoint")
	}
	b.Put([]byte("k1"), []byte("v1"))
	b.Put([]byte("k2"), []byte{})
	b.Put([]byte("k3"), nil)
	b.Delete([]byte("k4"))
	b.SetCheckpoint(12)
	if b.Len() != 4 {
		t.Fatalf("Len() = %d, want 4", b.Len())
	}
	if b.Size() != 4*2+2 {
		t.Fatalf("Size() = %d, want 10", b.Size())
	}
	type op struct {
		key, value string
		del        bool
	}
	var ops []op
	if err := b.Each(func(k, v []byte) error {
		ops = append(ops, op{string(k), string(v), v == nil})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []op{{"k1", "v1", false}, {"k2", "", false}, {"k3", "", true}, {"k4", "", true}}
	if len(ops) != len(want) {
		t.Fatalf("Each saw %v, want %v", ops, want)
	}
	for i := range want {
		if ops[i] != want[i] {
			t.Fatalf("Each saw %v, want %v", ops, want)
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := b.Each(func(_, _ []byte) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Each after an error: %v, %d calls", err, n)
	}

	b.Reset()
	if _, ok := b.Checkpoint(); b.Len() != 0 || b.Size() != 0 || ok {
		t.Fatal("Reset left something in the batch")
	}
	// An empty value with an empty key, in an otherwise empty batch, is
	// still a put.
	b.Put(nil, []byte{})
	if err := b.Each(func(k, v []byte) error {
		if v == nil {
			t.Fatal("empty put reported as a delete")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
