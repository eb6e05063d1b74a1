package snapshots

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkLoader restores a changelog of 125000 snapshots of about 450
// bytes (one partition of the bench's 1M-aggregate restore, after
// compaction: almost every key once) in 4 MiB runs into an empty store.
func BenchmarkLoader(b *testing.B) {
	const n = 125000
	rng := rand.New(rand.NewPCG(1, 1))
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "account\x00acc-%07d", rng.IntN(8*n))
	}
	value := make([]byte, 450)
	for i := range value {
		value[i] = byte(rng.IntN(256))
	}
	b.SetBytes(int64(n * (len(value) + 20)))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		s, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		ld := s.NewLoader(4 << 20)
		for i, k := range keys {
			ld.Put(k, value)
			if ld.Size() >= 4<<20 {
				if err := ld.Flush(int64(i + 1)); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := ld.Flush(n); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
