package topology_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// Adversarial review of the store applier (applier.go): store writes that
// are slow at random and fail at random, a state cache too small to hold
// the working set (loads go to the overlay or the store), commands on
// several aggregates of the same partitions at once, and shutdowns by ctx
// cancel in the middle with writes queued, each restart on the same
// stores. Every reply must carry the next version of its aggregate (no
// version lost, none repeated), and the events topic must stay contiguous.
func TestReview4ApplierChaos(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var (
		mu     sync.Mutex
		rng    = rand.New(rand.NewPCG(4, 4))
		failed atomic.Int64
	)
	hook := func(int32) error {
		mu.Lock()
		d, fail := time.Duration(rng.IntN(4))*time.Millisecond, rng.IntN(6) == 0
		mu.Unlock()
		time.Sleep(d)
		if fail {
			failed.Add(1)
			return errors.New("review4: injected write failure")
		}
		return nil
	}
	mutate := func(c *topology.Config) {
		c.StateCacheEntries = 2
		topology.FailStoreWrite(c, hook)
	}
	w := h.StartProcessor("w0", "", mutate)
	dir := w.StateDir
	const accounts = 8
	ids := make([]string, accounts)
	for i := range ids {
		ids[i] = fmt.Sprintf("rv4-%d", i)
		openAccountID(t, h, ids[i])
	}
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make(chan error, accounts)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range 6 {
					want := int64(2 + round*6 + k)
					rep, err := sendWithin(h, cmd("account", ids[i], "Deposit", `{"amount":1}`), 60*time.Second)
					if err != nil {
						errs <- fmt.Errorf("%s: %w", ids[i], err)
						return
					}
					if rep.Status != wire.StatusAccepted || rep.Version != want {
						errs <- fmt.Errorf("%s: got %s at %d, want ACCEPTED at %d (%s)", ids[i], rep.Status, rep.Version, want, rep.Message)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			t.FailNow()
		}
		// Shut down with whatever is queued (ctx cancel), then restart on
		// the same stores.
		if err := w.Stop(); err != nil {
			t.Fatal(err)
		}
		if round < 2 {
			w = h.StartProcessor("w0", dir, mutate)
		}
	}
	if failed.Load() == 0 {
		t.Fatal("no write failed: the test did not test failures")
	}
	// Restarted without faults or cache: the stores and catch-ups hold
	// every committed version.
	w = h.StartProcessor("w0", dir, func(c *topology.Config) { c.StateCacheEntries = -1 })
	for _, id := range ids {
		wantStatus(t, h.Send(cmd("account", id, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2+3*6)
	}
	wantContiguous(t, h)
	if w.Err() != nil {
		t.Fatal(w.Err())
	}
}
