package history_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestCheckpointPastTheLogEnd: the index's checkpoint is past the end of
// the events topic it was built from (same topic id: a log truncated by
// an unclean leader election, or a state directory restored from a backup
// newer than the cluster's). Records written at offsets below the
// checkpoint would never be indexed nor scanned. The indexer must rebuild,
// and reads must answer 503 (ErrNotIndexed) until then, then the whole
// history, never a shorter one or a 500.
func TestCheckpointPastTheLogEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.h.StartProcessor("p1", "")
	e.send(cmd("account", "t-1", "OpenAccount", `{"owner":"T","currency":"EUR"}`), wire.StatusAccepted)
	e.send(cmd("account", "t-1", "Deposit", `{"amount":2}`), wire.StatusAccepted)
	dir := t.TempDir()
	e.openIndex(dir)
	e.indexed(e.scan())
	e.stop()
	// The same index, its checkpoint moved far past the log's end.
	idx, err := history.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idx.Apply(0, nil, 1_000_000); err != nil {
		t.Fatal(err)
	}
	_ = idx.Close()
	e.openIndex(dir)
	e.send(cmd("account", "t-1", "Deposit", `{"amount":3}`), wire.StatusAccepted)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got []history.Event
	for ctx.Err() == nil {
		got, err = e.r.History(ctx, "account", "t-1", 1, 0)
		if err == nil && len(got) == 3 {
			return
		}
		if err == nil || !errors.Is(err, history.ErrNotIndexed) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("History with a checkpoint past the log end = %s, %v; want versions 1..3 (503 meanwhile)", describe(got), err)
}
