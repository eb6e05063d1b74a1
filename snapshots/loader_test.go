package snapshots

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// logRecord is one record of a simulated changelog: a put, or a delete
// (value nil).
type logRecord struct {
	key, value []byte
}

// randomLog returns n records over a small key space, so that keys repeat
// within and across runs, with deletes and empty values among them.
func randomLog(rng *rand.Rand, n int) []logRecord {
	out := make([]logRecord, n)
	for i := range out {
		k := []byte(fmt.Sprintf("agg-%03d", rng.IntN(300)))
		switch rng.IntN(10) {
		case 0:
			out[i] = logRecord{key: k}
		case 1:
			out[i] = logRecord{key: k, value: []byte{}}
		default:
			out[i] = logRecord{key: k, value: []byte(fmt.Sprintf("%s@%d%s", k, i, strings.Repeat("x", rng.IntN(2000))))}
		}
	}
	return out
}

// applyLog returns the contents after applying records [0, n) over m.
func applyLog(m map[string]string, log []logRecord) map[string]string {
	m = maps.Clone(m)
	if m == nil {
		m = map[string]string{}
	}
	for _, r := range log {
		if r.value == nil {
			delete(m, string(r.key))
		} else {
			m[string(r.key)] = string(r.value)
		}
	}
	return m
}

func contents(t *testing.T, s *Store) map[string]string {
	t.Helper()
	got := map[string]string{}
	if err := s.Scan(func(k, v []byte) error {
		got[string(k)] = string(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// reopenAfterCrash closes s, opens the store the crashed file system
// holds (one that does not open fails the test) and returns it with its
// checkpoint (0 when it has none).
func reopenAfterCrash(t *testing.T, s *Store, crashed *vfs.MemFS, seed int) (*Store, int64) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open("/store", Options{FS: crashed})
	if err != nil {
		t.Fatalf("seed %d: store does not reopen after a crash: %v", seed, err)
	}
	next, ok, err := s.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		next = 0
	}
	return s, next
}

// TestLoaderKeepsChangelogOrder: a Loader flushed at random points (runs
// below and above the ingestion threshold, so both the batch and the
// sorted-table path run, over a store that already has data) leaves the
// store with exactly the last value of each key in changelog order, the
// checkpoint of the last flush, and no table file behind.
func TestLoaderKeepsChangelogOrder(t *testing.T) {
	for seed := range 6 {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		dir := t.TempDir()
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		log := randomLog(rng, 3000)
		// Some data written the ordinary way first.
		pre := log[:200]
		var b Batch
		for _, r := range pre {
			b.Put(r.key, r.value)
		}
		b.SetCheckpoint(200)
		if err := s.Apply(&b); err != nil {
			t.Fatal(err)
		}
		l := s.NewLoader(0)
		ingested := 0
		for i := 200; i < len(log); i++ {
			if log[i].value == nil {
				l.Delete(log[i].key)
			} else {
				l.Put(log[i].key, log[i].value)
			}
			if rng.IntN(400) == 0 || i == len(log)-1 {
				if l.Size() >= ingestMin {
					ingested++
				}
				if err := l.Flush(int64(i + 1)); err != nil {
					t.Fatal(err)
				}
				if l.Len() != 0 || l.Size() != 0 {
					t.Fatalf("seed %d: loader not empty after Flush", seed)
				}
			}
		}
		if ingested == 0 {
			t.Fatalf("seed %d: no run took the ingestion path: the test checks only batches", seed)
		}
		want := applyLog(nil, log)
		if got := contents(t, s); !maps.Equal(got, want) {
			t.Fatalf("seed %d: %d keys after the load, want %d (or values differ)", seed, len(got), len(want))
		}
		for k, v := range want {
			got, ok, err := s.Get([]byte(k))
			if err != nil || !ok || string(got) != v {
				t.Fatalf("seed %d: Get(%q) = %d bytes, %v, %v", seed, k, len(got), ok, err)
			}
		}
		if next, ok, err := s.Checkpoint(); err != nil || !ok || next != int64(len(log)) {
			t.Fatalf("seed %d: checkpoint %d, %v, %v; want %d", seed, next, ok, err, len(log))
		}
		// A regression is refused and writes nothing, on both paths.
		for _, size := range []int{10, 2 * ingestMin} {
			l.Put([]byte("agg-000"), []byte(strings.Repeat("r", size)))
			if err := l.Flush(5); !errors.Is(err, ErrCheckpointRegression) {
				t.Fatalf("seed %d: flush below the checkpoint: %v", seed, err)
			}
		}
		if got := contents(t, s); !maps.Equal(got, want) {
			t.Fatalf("seed %d: a refused flush changed the store", seed)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if left, _ := vfs.Default.List(dir); strings.Contains(strings.Join(left, " "), "restore-") {
			t.Fatalf("seed %d: table files left in the store's directory: %v", seed, left)
		}
	}
}

// TestLoaderCrash: a machine crash during a load leaves a store that reopens
// with a checkpoint c no later than the last flush, and reading the
// changelog again from c over it gives the full state (data past the
// checkpoint is allowed, since the same records are applied again in the
// same order; a checkpoint past the data is not).
func TestLoaderCrash(t *testing.T) {
	seeds := 20
	if testing.Short() {
		seeds = 5
	}
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 11))
		fs := vfs.NewCrashableMem()
		s, err := Open("/store", Options{MemTableSize: 256 << 10, FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		log := randomLog(rng, 2000)
		crashAt := rng.IntN(len(log))
		var crashed *vfs.MemFS
		l := s.NewLoader(0)
		for i, r := range log {
			if r.value == nil {
				l.Delete(r.key)
			} else {
				l.Put(r.key, r.value)
			}
			if rng.IntN(300) == 0 || i == len(log)-1 {
				if err := l.Flush(int64(i + 1)); err != nil {
					t.Fatal(err)
				}
			}
			if i == crashAt {
				crashed = fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
			}
		}
		s, next := reopenAfterCrash(t, s, crashed, seed)
		if next > int64(crashAt+1) {
			t.Fatalf("seed %d: checkpoint %d after a crash at record %d", seed, next, crashAt)
		}
		// Restore from the checkpoint, as the topology does.
		l = s.NewLoader(0)
		for _, r := range log[next:] {
			l.Put(r.key, r.value)
		}
		if err := l.Flush(int64(len(log))); err != nil {
			t.Fatal(err)
		}
		if got, want := contents(t, s), applyLog(nil, log); !maps.Equal(got, want) {
			t.Fatalf("seed %d: checkpoint %d after the crash; restoring from it gives %d keys, want %d (or values differ)", seed, next, len(got), len(want))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A table file left by a process that died before ingesting it is removed
// when the store is opened again.
func TestOpenRemovesLeftoverLoaderTables(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := vfs.Default.Create(vfs.Default.PathJoin(dir, "restore-7.sst"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if left, _ := vfs.Default.List(dir); strings.Contains(strings.Join(left, " "), "restore-") {
		t.Fatalf("leftover table not removed: %v", left)
	}
}
