package history_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestForgedCopyOfAnEvent: a client with write access to the events topic
// appends an exact copy of an aggregate's version 2 (key, headers and
// envelope all consistent). The reader cannot tell which copy is the
// processor's, so it must say the history is broken (ErrIncomplete), not
// show version 2 twice; a fold refuses it too.
func TestForgedCopyOfAnEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.h.StartProcessor("p1", "")
	e.send(cmd("account", "f-1", "OpenAccount", `{"owner":"F","currency":"EUR"}`), wire.StatusAccepted)
	e.send(cmd("account", "f-1", "Deposit", `{"amount":5}`), wire.StatusAccepted)
	e.send(cmd("account", "f-1", "Deposit", `{"amount":7}`), wire.StatusAccepted)
	var v2 *kgo.Record
	for _, r := range e.h.ReadTopic("events") {
		if env, _, err := e.h.Registry.DecodeEvents(r.Value); err == nil && env.AggregateID == "f-1" && env.Version == 2 {
			v2 = r
		}
	}
	if v2 == nil {
		t.Fatal("no version 2")
	}
	prod, err := kgo.NewClient(e.clientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	forged := &kgo.Record{Topic: e.h.Topic("events"), Partition: 0, Key: v2.Key, Value: v2.Value, Headers: v2.Headers}
	if err := prod.ProduceSync(ctx, forged).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e.openIndex(t.TempDir())
	e.indexed(e.scan())
	got, err := e.r.History(ctx, "account", "f-1", 1, 0)
	if !errors.Is(err, history.ErrIncomplete) {
		t.Fatalf("History with a forged copy of version 2 = %s, %v; want ErrIncomplete", describe(got), err)
	}
}
