package history_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// batchRecs is the records of batch i of a partition: offsets 10i..10i+9,
// each an event of its own aggregate.
func batchRecs(i int) []*kgo.Record {
	var out []*kgo.Record
	for o := 10 * i; o < 10*i+10; o++ {
		out = append(out, &kgo.Record{Key: fmt.Appendf(nil, "a-%d", o), Offset: int64(o), Headers: []kgo.RecordHeader{
			{Key: wire.HeaderAggregateType, Value: []byte("account")},
			{Key: wire.HeaderVersion, Value: []byte("1")},
		}})
	}
	return out
}

// TestCrashKeepsAPrefixOfBatches: the index keeps no write-ahead log, so a
// crash loses what was only in memory; what it keeps must be a prefix of
// the batches, each with its checkpoint: every event below the checkpoint
// on disk is on disk (the indexer resumes there and never skips one), and
// nothing was lost that a flush had written. A clean Close keeps all.
func TestCrashKeepsAPrefixOfBatches(t *testing.T) {
	for _, c := range []struct {
		crash    bool
		unsynced int // percent of unsynced data the crash keeps
	}{{true, 0}, {true, 30}, {true, 70}, {false, 0}} {
		crash := c.crash
		t.Run(fmt.Sprintf("crash=%v,unsynced=%d%%", crash, c.unsynced), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			idx, err := history.OpenFS("idx", fs)
			if err != nil {
				t.Fatal(err)
			}
			const batches, flushedAt = 40, 25
			for i := range batches {
				if _, err := idx.Apply(0, batchRecs(i), int64(10*i+10)); err != nil {
					t.Fatal(err)
				}
				if i == flushedAt-1 {
					if err := idx.FlushMemtable(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if crash {
				crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: c.unsynced, RNG: rand.New(rand.NewPCG(uint64(c.unsynced), 1))})
				_ = idx.Close() // writes only to fs, not to its crashed clone
				fs = crashed
			} else if err := idx.Close(); err != nil {
				t.Fatal(err)
			}
			idx, err = history.OpenFS("idx", fs)
			if err != nil {
				t.Fatal(err)
			}
			defer idx.Close()
			cp, ok, err := idx.Checkpoint(0)
			if err != nil || !ok {
				t.Fatalf("checkpoint: %d %v %v", cp, ok, err)
			}
			if cp < 10*flushedAt || (!crash && cp != 10*batches) {
				t.Fatalf("checkpoint %d after the crash=%v, want >= %d (flushed) and %d after a clean close", cp, crash, 10*flushedAt, 10*batches)
			}
			have := map[int64]bool{}
			if err := idx.Dump(func(_, _ string, p history.Pointer) { have[p.Offset] = true }); err != nil {
				t.Fatal(err)
			}
			for o := range int64(10 * batches) {
				if have[o] != (o < cp) {
					t.Fatalf("offset %d indexed=%v with the checkpoint at %d: not a prefix", o, have[o], cp)
				}
			}
			t.Logf("crash=%v: checkpoint %d of %d", crash, cp, 10*batches)
		})
	}
}
