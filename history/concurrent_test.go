package history_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestConcurrentReadsWhileIndexing: many readers at once (run with -race)
// while commands keep arriving and the indexer writes: every answer is a
// whole history from version 1 (never a gap, a duplicate or an error), and
// a state at a version never changes once answered.
func TestConcurrentReadsWhileIndexing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.h.StartProcessor("p1", "")
	ids := []string{"cr-0", "cr-1", "cr-2"}
	for _, id := range ids {
		e.send(cmd("account", id, "OpenAccount", `{"owner":"C","currency":"EUR"}`), wire.StatusAccepted)
	}
	e.openIndex(t.TempDir())
	e.indexed(e.scan()) // before: 503 (ErrNotIndexed), by design
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := ids[w%len(ids)]
			for {
				select {
				case <-stop:
					return
				default:
				}
				evs, err := e.r.History(ctx, "account", id, 1, 0)
				if err != nil {
					errs <- fmt.Errorf("History(%s): %w", id, err)
					return
				}
				for i, ev := range evs {
					if ev.Version != int64(i+1) {
						errs <- fmt.Errorf("History(%s) = %s", id, describe(evs))
						return
					}
				}
				st, err := e.r.StateAt(ctx, "account", id, history.At{Version: 1})
				if err != nil || st.Version != 1 {
					errs <- fmt.Errorf("StateAt(%s, 1) = %+v, %w", id, st, err)
					return
				}
			}
		}()
	}
	for i := range 12 {
		e.send(cmd("account", ids[i%len(ids)], "Deposit", `{"amount":1}`), wire.StatusAccepted)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
