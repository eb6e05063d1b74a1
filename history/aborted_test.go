package history_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/wire"
)

// TestAbortedCopyIsNotHistory: a transactional producer (a zombie, or
// anyone) writes a well-formed event record of the aggregate's next
// version and aborts. Neither the tail scan (before the index has read
// it) nor the indexed path may show it; when the processor then writes
// the real next version, the history is whole, without a duplicate.
func TestAbortedCopyIsNotHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.h.StartProcessor("p1", "")
	e.send(cmd("account", "z-1", "OpenAccount", `{"owner":"Z","currency":"EUR"}`), wire.StatusAccepted)
	e.send(cmd("account", "z-1", "Deposit", `{"amount":5}`), wire.StatusAccepted)
	e.send(cmd("account", "z-1", "Deposit", `{"amount":6}`), wire.StatusAccepted)
	// Version 3 copied, written again in a transaction that aborts: it
	// must not show up as a duplicate.
	var v3 *kgo.Record
	for _, r := range e.h.ReadTopic("events") {
		if env, _, err := e.h.Registry.DecodeEvents(r.Value); err == nil && env.AggregateID == "z-1" && env.Version == 3 {
			v3 = r
		}
	}
	if v3 == nil {
		t.Fatal("no version 3")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e.openIndex(t.TempDir())
	e.indexed(e.scan())
	zombie, err := kgo.NewClient(append(e.clientOpts(), kgo.TransactionalID("zombie-"+t.Name()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer zombie.Close()
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		rec := &kgo.Record{Topic: e.h.Topic("events"), Partition: 0, Key: v3.Key, Value: v3.Value, Headers: v3.Headers}
		if err := zombie.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := zombie.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	// The tail path first (read at once, whether or not the indexer has
	// read the aborted records yet), then the indexed one.
	got, err := e.r.History(ctx, "account", "z-1", 1, 0)
	if err != nil || len(got) != 3 {
		t.Fatalf("History = %s, %v; want versions 1..3 once", describe(got), err)
	}
	e.send(cmd("account", "z-1", "Deposit", `{"amount":1}`), wire.StatusAccepted)
	e.indexed(e.scan())
	got, err = e.r.History(ctx, "account", "z-1", 1, 0)
	if err != nil || len(got) != 4 {
		t.Fatalf("after a deposit: History = %s, %v; want versions 1..4", describe(got), err)
	}
	if _, err := e.r.StateAt(ctx, "account", "z-1", history0()); err != nil {
		t.Fatal(err)
	}
}
