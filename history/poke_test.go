package history_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestPokeStartsARoundAtOnce: an indexer with an hour between rounds
// indexes a record written after its first round as soon as it is poked.
func TestPokeStartsARoundAtOnce(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	idx, err := history.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	ix, err := history.NewIndexer(history.IndexerConfig{Index: idx, ClientOpts: opts, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx) }()
	// The first round records the empty partition's checkpoint.
	for {
		if _, ok, err := idx.Checkpoint(0); err != nil {
			t.Fatal(err)
		} else if ok {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the first round did not end")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cl, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic("events"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("a-1"), Value: []byte("x"), Headers: []kgo.RecordHeader{
		{Key: wire.HeaderAggregateType, Value: []byte("account")}, {Key: wire.HeaderVersion, Value: []byte("1")},
	}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for ix.Stats().Indexed == 0 {
		changed := ix.Changed()
		ix.Poke()
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatal("the record was not indexed after a poke")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
