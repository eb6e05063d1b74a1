package topology_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/wire"
)

// TestGarbageKeyRecordIsSkipped: a record in the keys topic that is not a
// key record at all (a misconfigured client wrote it; only ACLs keep them
// out) does not stop every worker at start: it is skipped with an error log
// naming it, and every subject with a real key stays readable. (A record
// that is a key record of another master key still stops the start:
// TestWrongMasterKeyStopsTheStart.)
func TestGarbageKeyRecordIsSkipped(t *testing.T) {
	t.Parallel()
	mk := masterKey(t, 5)
	h := newHarness(t)
	w0 := h.StartProcessor("w0", "", withMaster(mk))
	wantStatus(t, h.Send(cmd("account", "g1", "OpenAccount", `{"owner":"Gina","currency":"EUR"}`)), wire.StatusAccepted, 1)
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
	for _, v := range [][]byte{[]byte("garbage"), []byte("kcqrs-key1"), {}} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "kcqrs-keys", Partition: 0, Key: []byte("account/junk"), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if h.Registry, err = examples.Registry(); err != nil {
		t.Fatal(err)
	}
	w1 := h.StartProcessor("w1", "", withMaster(mk))
	rep := h.Send(cmd("account", "g1", "Deposit", `{"amount":5}`))
	select {
	case <-w1.Done():
		t.Fatalf("the worker stopped: %v", w1.Err())
	default:
	}
	wantStatus(t, rep, wire.StatusAccepted, 2)
}
