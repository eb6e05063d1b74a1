package snapshots_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/snapshots"
)

const benchKeys = 100_000

func benchKey(i int) []byte { return fmt.Appendf(nil, "account-%08d", i) }

var benchValue = []byte(strings.Repeat("s", 200)) // a typical encoded snapshot

// BenchmarkApply applies batches of 1000 snapshots of 200 bytes, the end of a
// busy transaction, with the default options.
func BenchmarkApply(b *testing.B) {
	s, err := snapshots.Open(b.TempDir(), snapshots.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	keys := make([][]byte, benchKeys)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	batch := s.NewBatch()
	b.SetBytes(int64(1000 * (len(benchValue) + len(keys[0]))))
	b.ReportAllocs()
	next := int64(0)
	for b.Loop() {
		batch.Reset()
		for range 1000 {
			batch.Put(keys[rng.IntN(len(keys))], benchValue)
		}
		next += 1000
		batch.SetCheckpoint(next)
		if err := s.Apply(batch); err != nil {
			b.Fatal(err)
		}
	}
}

// fillBench fills a store with benchKeys snapshots, most of them flushed out
// of the memtable, as after a restore.
func fillBench(b *testing.B, opts snapshots.Options) *snapshots.Store {
	b.Helper()
	s, err := snapshots.Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	batch := s.NewBatch()
	for i := range benchKeys {
		batch.Put(benchKey(i), benchValue)
		if batch.Len() == 1000 {
			batch.SetCheckpoint(int64(i + 1))
			if err := s.Apply(batch); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
	return s
}

// BenchmarkGet reads random snapshots of a store holding 100k of them (about
// 22 MB) through a 64 MiB shared cache.
func BenchmarkGet(b *testing.B) {
	cache := snapshots.NewCache(64 << 20)
	defer cache.Unref()
	s := fillBench(b, snapshots.Options{Cache: cache})
	keys := make([][]byte, benchKeys)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := s.Get(keys[rng.IntN(len(keys))]); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkGetParallel is BenchmarkGet from GOMAXPROCS goroutines.
func BenchmarkGetParallel(b *testing.B) {
	cache := snapshots.NewCache(64 << 20)
	defer cache.Unref()
	s := fillBench(b, snapshots.Options{Cache: cache})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 3))
		for pb.Next() {
			if _, ok, err := s.Get(benchKey(rng.IntN(benchKeys))); err != nil || !ok {
				b.Error(ok, err)
				return
			}
		}
	})
}
