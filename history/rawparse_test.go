package history_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/wire"
)

// TestIndexEqualsReadCommittedConsumer: the indexer parses fetched batches
// itself. Against a log of interleaved transactions of two producers (one
// aborting every third), plain (non-transactional) records, every
// compression codec and records without kcqrs headers, the index must hold
// exactly the records a franz-go read_committed consumer is handed, with
// their versions and timestamps, and nothing else.
func TestIndexEqualsReadCommittedConsumer(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	var producers []*kgo.Client
	for i := range 2 {
		cl, err := kgo.NewClient(append(opts, kgo.TransactionalID(fmt.Sprintf("p%d", i)), kgo.DefaultProduceTopic("events"),
			kgo.ProducerBatchCompression(codecs[i*2+1]), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		producers = append(producers, cl)
	}
	plain, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic("events"), kgo.ProducerBatchCompression(codecs[4]), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	rec := func(part int32, id string, v int, headers bool) *kgo.Record {
		r := &kgo.Record{Partition: part, Key: []byte(id), Value: []byte("payload-" + id)}
		if headers {
			r.Headers = []kgo.RecordHeader{{Key: wire.HeaderAggregateType, Value: []byte("account")}, {Key: wire.HeaderVersion, Value: []byte(strconv.Itoa(v))}}
		}
		return r
	}
	n := 0
	for round := range 30 {
		for i, p := range producers {
			if err := p.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			for j := range 1 + round%7 {
				n++
				p.Produce(ctx, rec(int32(j%2), fmt.Sprintf("a-%d-%d", i, j), n, j%5 != 4), nil)
			}
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if round%4 == 1 {
			n++
			if err := plain.ProduceSync(ctx, rec(int32(round%2), "plain", n, true)).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		for i, p := range producers {
			commit := kgo.TransactionEndTry(!(i == 1 && round%3 == 0))
			if err := p.EndTransaction(ctx, commit); err != nil {
				t.Fatal(err)
			}
		}
	}
	// What franz-go's read_committed decoding hands over (logread.Read:
	// kgo.ProcessFetchPartition), up to each partition's last stable offset.
	want := map[string]bool{}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	stable, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, "events")
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) {
		lso, _ := stable.Lookup("events", p)
		if _, err := logread.Read(ctx, cl, "events", p, 0, lso.Offset, logread.Options{}, func(r *kgo.Record) error {
			if len(r.Headers) > 0 {
				want[fmt.Sprintf("%s/%d@%d:%d t%d", r.Key, mustAtoi(t, string(r.Headers[1].Value)), r.Partition, r.Offset, r.Timestamp.UnixMilli())] = true
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := history.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	ix, err := history.NewIndexer(history.IndexerConfig{Index: idx, ClientOpts: opts})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	if err := idx.Dump(func(typ, id string, p history.Pointer) {
		got[fmt.Sprintf("%s/%d@%d:%d t%d", id, p.Version, p.Partition, p.Offset, p.TimestampMillis)] = true
	}); err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("index holds %d entries, the read_committed consumer was handed %d", len(got), len(want))
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("index lacks %s", k)
		}
	}
	if st := ix.Stats(); st.Skipped == 0 {
		t.Fatalf("no record without headers was skipped: %+v", st)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	v, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
