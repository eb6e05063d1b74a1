package snapshots

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// crashBatch is batch i of the crash test: checkpoint i+1, a marker, an
// aggregate or more updated and one deleted, and with filler > 0 values big
// enough for memtables to fill and flush. Small batches make it likely that
// a crash cuts the write-ahead log close to a checkpoint.
func crashBatch(i, puts, filler int) *Batch {
	b := new(Batch)
	b.Put([]byte("last"), []byte(fmt.Sprint(i)))
	for j := range puts {
		k := fmt.Sprintf("agg-%03d", (i*7+j)%200)
		b.Put([]byte(k), []byte(fmt.Sprintf("%s@%d%s", k, i, strings.Repeat(".", filler))))
	}
	b.Delete([]byte(fmt.Sprintf("agg-%03d", (i*13)%200)))
	b.SetCheckpoint(int64(i + 1))
	return b
}

// replay returns the contents after batches [0, n).
func replay(n, puts, filler int) map[string]string {
	m := map[string]string{}
	for i := range n {
		_ = crashBatch(i, puts, filler).Each(func(k, v []byte) error {
			if v == nil {
				delete(m, string(k))
			} else {
				m[string(k)] = string(v)
			}
			return nil
		})
	}
	return m
}

// TestCrashLeavesConsistentPrefix simulates machine crashes (all unsynced
// data lost, or random 4 KiB blocks of it kept) at random moments of a
// stream of unsynced batches, and checks the claim of the package
// documentation: the store reopens, and holds exactly the batches before its
// checkpoint, none in part, none of those after. (Writing the checkpoint
// apart from its data fails this test.)
func TestCrashLeavesConsistentPrefix(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 10
	}
	recovered := 0
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 99))
		puts, filler := 1, 0
		if seed%2 == 1 {
			puts, filler = 5, 200
		}
		fs := vfs.NewCrashableMem()
		s, err := Open("/store", Options{MemTableSize: 64 << 10, FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		total := 100 + rng.IntN(400)
		crashAt := rng.IntN(total)
		var crashed *vfs.MemFS
		for i := range total {
			if err := s.Apply(crashBatch(i, puts, filler)); err != nil {
				t.Fatal(err)
			}
			if i == crashAt {
				crashed = fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
			}
		}
		s, next := reopenAfterCrash(t, s, crashed, seed)
		if next > int64(crashAt+1) {
			t.Fatalf("seed %d: checkpoint %d after a crash after batch %d", seed, next, crashAt)
		}
		if next > 0 {
			recovered++
		}
		want := replay(int(next), puts, filler)
		got := contents(t, s)
		if !maps.Equal(got, want) {
			keys := slices.Sorted(maps.Keys(got))
			t.Fatalf("seed %d: checkpoint %d, but the data is not that of batches [0, %d): last=%q, %d keys %q",
				seed, next, next, got["last"], len(keys), keys[:min(5, len(keys))])
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// The test is worth something only if some crashes kept data.
	if recovered == 0 {
		t.Fatal("no crash kept any batch: the test checks nothing")
	}
	t.Logf("%d of %d crashes kept a non-empty prefix", recovered, seeds)
}

// TestSharedCache checks that stores opened with one Cache really share it
// (a block read by one shows in the other's cache metrics) and that the
// references are counted right.
func TestSharedCache(t *testing.T) {
	cache := NewCache(8 << 20)
	s1, err := Open(t.TempDir(), Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Open(t.TempDir(), Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	private, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer private.Close()
	cache.Unref()
	if cache.refs != 2 {
		t.Fatalf("cache refs = %d with two open stores, want 2", cache.refs)
	}

	b := new(Batch)
	for i := range 2000 {
		b.Put([]byte(fmt.Sprintf("agg-%05d", i)), []byte(strings.Repeat("x", 200)))
	}
	b.SetCheckpoint(1)
	for _, s := range []*Store{s1, s2, private} {
		if err := s.Apply(b); err != nil {
			t.Fatal(err)
		}
		// Move the data from the memtable to sstables, so reads go
		// through the block cache.
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s1.Count(); err != nil { // reads every block of s1
		t.Fatal(err)
	}
	if m1, m2 := s1.db.Metrics().BlockCache, s2.db.Metrics().BlockCache; m1.Size == 0 || m2.Size != m1.Size {
		t.Fatalf("block cache sizes: s1 %d, s2 %d: want the same, non-zero (one shared cache)", m1.Size, m2.Size)
	}
	if size := private.db.Metrics().BlockCache.Size; size != 0 {
		t.Fatalf("a store with a private cache sees %d bytes cached by others", size)
	}
	for _, s := range []*Store{s1, s2} {
		if v, ok, err := s.Get([]byte("agg-01234")); err != nil || !ok || len(v) != 200 {
			t.Fatalf("Get = %d bytes, %v, %v", len(v), ok, err)
		}
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if cache.refs != 1 {
		t.Fatalf("cache refs = %d after one Close, want 1", cache.refs)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if cache.refs != 0 {
		t.Fatalf("cache refs = %d after all Close, want 0", cache.refs)
	}
}

func TestFormatMismatch(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], formatVersion+1)
	if err := s.db.Set(keyFormat, buf[:], pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(dir, Options{}); err == nil {
		s.Close()
		t.Fatal("Open accepted a store of an unknown format")
	} else if !strings.Contains(err.Error(), "format") {
		t.Fatalf("Open error %q does not name the format", err)
	}
	// A failed Open releases the directory.
	if err := Remove(dir); err != nil {
		t.Fatalf("Remove after a failed Open: %v", err)
	}
}

func TestCorruptCheckpoint(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.db.Set(keyCheckpoint, []byte{1, 2, 3}, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Checkpoint(); err == nil || !strings.HasPrefix(err.Error(), "snapshots: ") {
		t.Fatalf("Checkpoint of a corrupt checkpoint: %v", err)
	}
	b := new(Batch)
	b.SetCheckpoint(5)
	if err := s.Apply(b); err == nil {
		t.Fatal("Apply over a corrupt checkpoint succeeded")
	}
}

func TestLoggerFatalPanics(t *testing.T) {
	var got []string
	l := logger{func(format string, args ...any) { got = append(got, fmt.Sprintf(format, args...)) }}
	l.Infof("info %d", 1)
	l.Errorf("error %d", 2)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Fatalf returned")
			}
		}()
		l.Fatalf("fatal %d", 3)
	}()
	if want := []string{"info 1", "error 2", "fatal 3"}; !slices.Equal(got, want) {
		t.Fatalf("logged %q, want %q", got, want)
	}
}
