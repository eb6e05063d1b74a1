package logread_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/logread"
)

// Adversarial review of ReadKV: transactions of three producers open at
// the same time (an aborted transaction's data, then another producer's
// committed data, then the abort marker), records far larger than the
// partition's fetch bound (one batch per fetch: every abort marker lands in
// a later fetch than its data), and reads starting at every offset of the
// log. What ReadKV hands over is checked against the log as produced, not
// only against franz-go.
func TestReview4ReadKVInterleavedAbortsOneBatchPerFetch(t *testing.T) {
	t.Parallel()
	lg := newTxnLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(44, 4))
	var ps []*kgo.Client
	for i := range 3 {
		cl, err := kgo.NewClient(kgo.SeedBrokers(lg.seeds...), kgo.TransactionalID(fmt.Sprint("iv", i)),
			kgo.DefaultProduceTopic("log"), kgo.ProducerBatchCompression(kgo.ZstdCompression(), kgo.NoCompression()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ps = append(ps, cl)
	}
	// offset -> the committed record there ("" when none).
	type rec struct {
		off int64
		kv  string
	}
	var committed []rec
	open := make([][]rec, len(ps)) // records of each producer's open transaction
	n := 0
	for step := range 120 {
		i := rng.IntN(len(ps))
		p := ps[i]
		if open[i] == nil {
			if err := p.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			open[i] = []rec{}
		}
		if len(open[i]) > 0 && rng.IntN(3) == 0 || step >= 110 {
			commit := rng.IntN(2) == 0
			if err := p.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
				t.Fatal(err)
			}
			if commit {
				committed = append(committed, open[i]...)
			}
			open[i] = nil
			continue
		}
		n++
		// Big values: larger than the partition bound below.
		v := bytes.Repeat([]byte{byte(n)}, 2000+rng.IntN(3000))
		if n%9 == 0 {
			v = nil
		}
		r := &kgo.Record{Key: fmt.Appendf(nil, "k%d", n), Value: v}
		if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		open[i] = append(open[i], rec{r.Offset, show(r.Key, r.Value)})
	}
	for i, p := range ps {
		if open[i] != nil {
			if err := p.EndTransaction(ctx, kgo.TryCommit); err != nil {
				t.Fatal(err)
			}
			committed = append(committed, open[i]...)
		}
	}
	cl := lg.client()
	stable, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, "log")
	if err != nil {
		t.Fatal(err)
	}
	lso, _ := stable.Lookup("log", 0)
	byOff := map[int64]string{}
	for _, c := range committed {
		byOff[c.off] = c.kv
	}
	for _, o := range []logread.Options{{PartitionMaxBytes: 1}, {MaxBytes: 1}, {PartitionMaxBytes: 9000}} {
		for from := int64(0); from < lso.Offset; from++ {
			var want []string
			for off := from; off < lso.Offset; off++ {
				if kv, ok := byOff[off]; ok {
					want = append(want, fmt.Sprint(off, " ", kv))
				}
			}
			var got []string
			next, err := logread.ReadKV(ctx, cl, "log", 0, from, lso.Offset, o, func(r *logread.KV) error {
				got = append(got, fmt.Sprint(r.Offset, " ", show(r.Key, r.Value)))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if next != lso.Offset || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("from %d, %+v: reached %d of %d with %d records, want %d:\n%.600v\n%.600v", from, o, next, lso.Offset, len(got), len(want), got, want)
			}
		}
	}
}
