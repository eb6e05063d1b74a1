package logread_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/logread"
)

// ReadKV hands over exactly what Read does (its oracle, franz-go's
// decoding) on a log of committed and aborted transactions of producers
// with every codec, plain records, tombstones and empty values, with small
// fetches (batches cut at the response's end) and from offsets inside
// batches.
func show(k, v []byte) string { return fmt.Sprintf("%s=%x/%v", k, v, v == nil) }

func TestReadKVMatchesRead(t *testing.T) {
	t.Parallel()
	lg := newTxnLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	rng := rand.New(rand.NewPCG(7, 7))
	var producers []*kgo.Client
	for i, c := range codecs {
		cl, err := kgo.NewClient(kgo.SeedBrokers(lg.seeds...), kgo.TransactionalID(fmt.Sprint("p", i)),
			kgo.DefaultProduceTopic("log"), kgo.ProducerBatchCompression(c))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		producers = append(producers, cl)
	}
	plain, err := kgo.NewClient(kgo.SeedBrokers(lg.seeds...), kgo.DefaultProduceTopic("log"), kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	value := func(i int) []byte {
		switch i % 7 {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		return bytes.Repeat([]byte{byte(i)}, 1+rng.IntN(300))
	}
	// committed lists what a read_committed reader must get, in order
	// (each transaction ends before the next one starts).
	var committed []string
	n := 0
	for round := range 12 {
		for _, p := range producers {
			if err := p.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			var txn []string
			for range 1 + rng.IntN(20) {
				n++
				r := &kgo.Record{Key: fmt.Appendf(nil, "k%d", rng.IntN(50)), Value: value(n)}
				txn = append(txn, show(r.Key, r.Value))
				p.Produce(ctx, r, nil)
			}
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			commit := kgo.TryCommit
			if rng.IntN(3) == 0 {
				commit = kgo.TryAbort
			}
			if commit == kgo.TryCommit {
				committed = append(committed, txn...)
			}
			if err := p.EndTransaction(ctx, commit); err != nil {
				t.Fatal(err)
			}
		}
		if round%3 == 0 {
			n++
			r := &kgo.Record{Key: []byte("plain"), Value: value(n)}
			committed = append(committed, show(r.Key, r.Value))
			if err := plain.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	cl := lg.client()
	stable, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, "log")
	if err != nil {
		t.Fatal(err)
	}
	lso, _ := stable.Lookup("log", 0)
	for _, o := range []logread.Options{{}, {MaxBytes: 300}, {MaxBytes: 4096, PartitionMaxBytes: 1000}} {
		for _, from := range []int64{0, 1, 5, lso.Offset / 3, lso.Offset - 2} {
			var want, got []string
			wantNext, err := logread.Read(ctx, cl, "log", 0, from, lso.Offset, o, func(r *kgo.Record) error {
				want = append(want, fmt.Sprint(r.Offset, " ", show(r.Key, r.Value)))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			gotNext, err := logread.ReadKV(ctx, cl, "log", 0, from, lso.Offset, o, func(r *logread.KV) error {
				got = append(got, fmt.Sprint(r.Offset, " ", show(r.Key, r.Value)))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if gotNext != wantNext || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("from %d, %+v: ReadKV reached %d with %d records, Read %d with %d\n%v\n%v", from, o, gotNext, len(got), wantNext, len(want), got, want)
			}
			if from == 0 {
				// Against the log as produced, not only franz-go: the
				// aborted transactions' records must be left out.
				var values []string
				for _, w := range want {
					_, v, _ := strings.Cut(w, " ")
					values = append(values, v)
				}
				if fmt.Sprint(values) != fmt.Sprint(committed) {
					t.Fatalf("%+v: read %d records, %d were committed (of %d produced)", o, len(values), len(committed), n)
				}
			}
		}
	}
}

// FetchAt of one batch (maxBytes 1) leaves an aborted transaction's records
// out, also when the response ends on its bound (the embedded broker then
// left the aborted transactions out of it).
func TestFetchAtLeavesAbortedRecordsOut(t *testing.T) {
	t.Parallel()
	lg := newTxnLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	z := lg.txn("zombie")
	lg.produce(ctx, z, "aborted-1")
	if err := z.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	lg.produce(ctx, z, "aborted-2")
	if err := z.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	c := lg.txn("committed")
	lg.produce(ctx, c, "a")
	if err := c.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	cl := lg.client()
	desc, err := logread.Describe(ctx, cl, "log", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for at := int64(0); at < 5; {
		f, err := logread.FetchAt(ctx, cl, "log", 0, desc, at, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range f.Records {
			got = append(got, string(r.Value))
		}
		if f.Next <= at {
			t.Fatalf("no progress at %d", at)
		}
		at = f.Next
	}
	if fmt.Sprint(got) != "[a]" {
		t.Fatalf("read %v, want [a]", got)
	}
}
