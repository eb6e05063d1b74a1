package history_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestTopicRecreatedWhileIndexing: the events topic is deleted and
// created again (a new topic id, offsets from 0) while the indexer runs
// with a checkpoint past the new topic's end. The running indexer must
// notice and rebuild, and meanwhile a read must not answer from pointers
// of the old topic: the new aggregate's history is found (or 503 while the
// index is rebuilt), never an empty or partial one.
func TestTopicRecreatedWhileIndexing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	p1 := e.h.StartProcessor("p1", "")
	e.send(cmd("account", "old-1", "OpenAccount", `{"owner":"O","currency":"EUR"}`), wire.StatusAccepted)
	for range 5 {
		e.send(cmd("account", "old-1", "Deposit", `{"amount":1}`), wire.StatusAccepted)
	}
	e.openIndex(t.TempDir())
	e.indexed(e.scan())
	if err := p1.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := e.h.Admin().DeleteTopics(ctx, e.h.Topic("events")); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		if td, err := e.h.Admin().ListTopics(ctx, e.h.Topic("events")); err == nil && !td.Has(e.h.Topic("events")) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.h.StartProcessor("p2", "")
	e.send(cmd("account", "new-1", "OpenAccount", `{"owner":"N","currency":"EUR"}`), wire.StatusAccepted)
	var got []history.Event
	var err error
	for ctx.Err() == nil {
		got, err = e.r.History(ctx, "account", "new-1", 1, 0)
		if err == nil && len(got) == 1 && got[0].Version == 1 {
			return
		}
		if err == nil || !errors.Is(err, history.ErrNotIndexed) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("History of new-1 after the topic was recreated: %s, %v", describe(got), err)
}
