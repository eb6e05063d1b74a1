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
	if err := cl.ProduceSync(ctx, eraseRecord(t, h, mk, "tomb")).FirstErr(); err != nil {
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

// TestTombstoneOfALiveKeyBlocksOnlyItsAggregate: a forged tombstone that
// destroys a live subject's data key (docs/erasure.md: only ACLs protect the
// keys topic) costs that subject its personal data; the other aggregates of
// its partition must still be served after a restart.
//
// Found in review (failed after 50 s): the victim's snapshot cannot be opened
// (shred.ErrNoKey) and was taken for data of a newer build (unreadable.go), so
// the whole partition waited for ever. Now a key missing once the partition's
// keys are loaded is refused for that aggregate alone (KeyLostError).
func TestTombstoneOfALiveKeyBlocksOnlyItsAggregate(t *testing.T) {
	t.Parallel()
	mk := masterKey(t, 32)
	h := newHarness(t)
	w0 := h.StartProcessor("w0", "", withMaster(mk))
	wantStatus(t, h.Send(cmd("account", "victim", "OpenAccount", `{"owner":"Vic","currency":"EUR"}`)), wire.StatusAccepted, 1)
	part := topology.PartitionFor([]byte("victim"), partitions)
	other := ""
	for i := 0; other == ""; i++ {
		if id := "other-" + string(rune('a'+i%26)) + string(rune('a'+i/26)); topology.PartitionFor([]byte(id), partitions) == part {
			other = id
		}
	}
	wantStatus(t, h.Send(cmd("account", other, "OpenAccount", `{"owner":"Otto","currency":"EUR"}`)), wire.StatusAccepted, 1)
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(h.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, h.ClientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: h.Topic(topology.DefaultKeysTopic), Partition: part, Key: []byte("account/victim"), Value: nil}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if h.Registry, err = examples.Registry(); err != nil {
		t.Fatal(err)
	}
	h.StartProcessor("w1", "", withMaster(mk))
	// The victim's command first: whatever its answer (or none), the
	// command after it on the same partition is answered.
	vctx, vcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer vcancel()
	rep, err := h.Client().Send(vctx, cmd("account", "victim", "Deposit", `{"amount":1}`))
	if err != nil || rep.Status != wire.StatusRejected || rep.Code != topology.CodePersonalDataUnreadable {
		t.Errorf("victim's deposit: %+v %v, want REJECTED %s", rep, err, topology.CodePersonalDataUnreadable)
	}
	wantStatus(t, h.Send(cmd("account", other, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
}
