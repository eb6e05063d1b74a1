package topology_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestTombstoneAfterErasureIsIgnored: erasure is irreversible, also against
// a tombstone. A forged nil-valued record for an erased subject that lands
// after its erasure marker (a client that may write the keys topic, a
// "cleanup" script) must not make a worker that loads the topic forget the
// erasure: it would accept commands on the erased aggregate again and give
// it a new data key, so new personal data would be stored for a subject the
// operator erased.
func TestTombstoneAfterErasureIsIgnored(t *testing.T) {
	t.Parallel()
	mk := masterKey(t, 31)
	h := newHarness(t)
	w0 := h.StartProcessor("w0", "", withMaster(mk))
	wantStatus(t, h.Send(cmd("account", "tomb", "OpenAccount", `{"owner":"Tom B","currency":"EUR"}`)), wire.StatusAccepted, 1)
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(h.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, h.ClientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, onTopic(eraseRecord(t, mk, "tomb"), h.Topic("commands"))).FirstErr(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the erasure", func() bool {
		return h.Send(cmd("account", "tomb", "Deposit", `{"amount":1}`)).Code == topology.CodeErased
	})
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	part := topology.PartitionFor([]byte("tomb"), partitions)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: h.Topic(topology.DefaultKeysTopic), Partition: part, Key: []byte("account/tomb"), Value: nil}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if h.Registry, err = examples.Registry(); err != nil {
		t.Fatal(err)
	}
	h.StartProcessor("w1", "", withMaster(mk))
	if rep := h.Send(cmd("account", "tomb", "Deposit", `{"amount":1}`)); rep.Code != topology.CodeErased {
		t.Fatalf("after a tombstone following the erasure: %+v", rep)
	}
}
