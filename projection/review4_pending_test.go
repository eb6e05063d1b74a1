package projection

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Adversarial review of PendingData: more than a fetch's worth (1 MiB) of
// aborted transactions after the position, and nothing committed. The
// embedded broker (kfake) leaves a partition's aborted transactions out of
// a response it ended on the response bound (internal/logread,
// oneFetchMaxBytes); with the response and the partition bound equal, that
// is the bound that ends it, and the aborted records looked committed: a
// version never caught up.
func TestReview4PendingDataIgnoresMegabytesOfAborts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	txn, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.TransactionalID("t-review4"),
		kgo.DefaultProduceTopic("events"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	big := make([]byte, 200<<10) // incompressible
	for i := range big {
		big[i] = byte(rand.Uint32())
	}
	for range 4 { // 4 transactions of 2 batches of 200 KiB: 1.6 MiB aborted
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := txn.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: big}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := txn.EndTransaction(ctx, kgo.TryAbort); err != nil {
			t.Fatal(err)
		}
	}
	got, err := PendingData(ctx, e.cl, e.adm, "events", map[int32]int64{0: 0})
	if err != nil || got {
		t.Fatalf("PendingData over aborted transactions only = %v, %v; want false", got, err)
	}
}
