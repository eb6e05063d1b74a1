package topology_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/snapshots"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
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

// A shutdown (ctx cancel) while committed batches' writes are held back:
// Run does not return before they landed, and the store left on disk holds
// every committed snapshot with its checkpoint (nothing lost, nothing
// half-written), read straight from the store, not through a catch-up.
func TestReview4ShutdownLandsQueuedWrites(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	gate := newWriteGate()
	t.Cleanup(gate.open)
	w := h.StartProcessor("w0", "", func(c *topology.Config) {
		c.StateCacheEntries = -1
		topology.FailStoreWrite(c, gate.hook)
	})
	id := "sd"
	openAccountID(t, h, id)
	pollUntil(t, "the open to be written", 30*time.Second, func() bool { return topology.ApplyBacklog(w.Processor) == 0 })
	gate.close()
	wantStatus(t, h.Send(cmd("account", id, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	wantStatus(t, h.Send(cmd("account", id, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	pollUntil(t, "the writes to be held", 30*time.Second, func() bool { return gate.held.Load() > 0 })
	stopped := make(chan error, 1)
	go func() { stopped <- w.Stop() }()
	// Run cannot end while a committed write is held.
	select {
	case <-w.Done():
		t.Fatal("Run returned with a committed batch's store write still held")
	case <-time.After(500 * time.Millisecond):
	}
	gate.open()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	// The store on disk against the changelog.
	part := topology.PartitionFor([]byte(id), partitions)
	var last []byte
	var lastOff int64 = -1
	for _, r := range h.ReadTopic(h.Topic(topology.Defaults().Topics.Changelog)) {
		if r.Partition == part && string(r.Key) == "account/"+id {
			last, lastOff = r.Value, r.Offset
		}
	}
	if lastOff < 0 {
		t.Fatal("no snapshot of the account in the changelog")
	}
	st, err := snapshots.Open(snapshots.PartitionDir(w.StateDir, h.Topic(topology.Defaults().Topics.Changelog), part), snapshots.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cp, ok, err := st.Checkpoint()
	if err != nil || !ok || cp <= lastOff {
		t.Fatalf("store checkpoint %d (ok %v, err %v), want past the last snapshot at %d", cp, ok, err, lastOff)
	}
	got, ok, err := st.Get([]byte("account/" + id))
	if err != nil || !ok || !bytes.Equal(got, last) {
		t.Fatalf("store holds %d bytes (ok %v, err %v), not the changelog's last snapshot (%d bytes)", len(got), ok, err, len(last))
	}
}

// Rebalances while store writes are slow and fail at random on both
// workers: revoked stores go to the tailer (standby) with writes queued or
// failed, come back, and every aggregate continues at the right version.
func TestReview4ApplierChaosRebalance(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var (
		mu     sync.Mutex
		rng    = rand.New(rand.NewPCG(5, 5))
		failed atomic.Int64
	)
	hook := func(int32) error {
		mu.Lock()
		d, fail := time.Duration(rng.IntN(5))*time.Millisecond, rng.IntN(5) == 0
		mu.Unlock()
		time.Sleep(d)
		if fail {
			failed.Add(1)
			return errors.New("review4: injected write failure")
		}
		return nil
	}
	mutate := func(c *topology.Config) {
		c.StateCacheEntries = 3
		c.Standbys = 1
		topology.FailStoreWrite(c, hook)
	}
	w0 := h.StartProcessor("w0", "", mutate)
	ids := openPerPartition(t, h, "rvb")
	versions := make([]int64, len(ids))
	for i := range versions {
		versions[i] = 1
	}
	send := func(round int) {
		var wg sync.WaitGroup
		errs := make(chan error, len(ids))
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 4 {
					versions[i]++
					rep, err := sendWithin(h, cmd("account", ids[i], "Deposit", `{"amount":1}`), 90*time.Second)
					if err != nil {
						errs <- fmt.Errorf("round %d %s: %w", round, ids[i], err)
						return
					}
					if rep.Status != wire.StatusAccepted || rep.Version != versions[i] {
						errs <- fmt.Errorf("round %d %s: got %s at %d, want ACCEPTED at %d (%s)", round, ids[i], rep.Status, rep.Version, versions[i], rep.Message)
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
	}
	send(0)
	w1 := h.StartProcessor("w1", "", mutate)
	send(1) // during and after w1's join
	pollUntil(t, "w1 to take partitions", 90*time.Second, func() bool { return len(w1.Assigned()) > 0 })
	send(2)
	if err := w1.Stop(); err != nil {
		t.Fatal(err)
	}
	send(3) // during and after w1's leave
	w1 = h.StartProcessor("w1", w1.StateDir, mutate)
	send(4)
	if failed.Load() == 0 {
		t.Fatal("no write failed: the test did not test failures")
	}
	wantContiguous(t, h)
	for _, w := range []*topologytest.Running{w0, w1} {
		if w.Err() != nil {
			t.Fatal(w.Err())
		}
	}
}

// An erasure whose snapshot write is queued behind a failing write of the
// same store (so it is skipped): the partition is caught up from the
// changelog, the account stays erased, and the store left on disk holds
// the erased snapshot the changelog holds, with its checkpoint.
func TestReview4ErasureBehindFailedWrite(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mk := masterKey(t, 4)
	gate := newWriteGate()
	t.Cleanup(gate.open)
	w := h.StartProcessor("w0", "", withMaster(mk), func(c *topology.Config) {
		c.StateCacheEntries = -1
		topology.FailStoreWrite(c, gate.hook)
	})
	id := "er4"
	openAccountID(t, h, id)
	pollUntil(t, "the open to be written", 30*time.Second, func() bool { return topology.ApplyBacklog(w.Processor) == 0 })
	gate.close()
	gate.failOne.Store(true)
	wantStatus(t, h.Send(cmd("account", id, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	pollUntil(t, "the deposit's write to be held", 30*time.Second, func() bool { return gate.held.Load() > 0 })
	wantStatus(t, rawSend(t, h, eraseRecord(t, h, mk, id)), wire.StatusAccepted, 2)
	pollUntil(t, "both writes queued", 30*time.Second, func() bool { return topology.ApplyBacklog(w.Processor) >= 2 })
	gate.open() // the deposit's write fails, the erasure's is skipped
	pollUntil(t, "the writes done", 30*time.Second, func() bool { return topology.ApplyBacklog(w.Processor) == 0 })
	if rep := h.Send(cmd("account", id, "Deposit", `{"amount":1}`)); rep.Code != topology.CodeErased {
		t.Fatalf("a deposit after the erasure: %+v, want code %s", rep, topology.CodeErased)
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	changelog := h.Topic(topology.Defaults().Topics.Changelog)
	part := topology.PartitionFor([]byte(id), partitions)
	st, err := snapshots.Open(snapshots.PartitionDir(w.StateDir, changelog, part), snapshots.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A store behind the changelog is allowed (the failed write's
	// partition is caught up on its next use); it must hold exactly the
	// changelog's state as of its checkpoint.
	cp, ok, err := st.Checkpoint()
	if err != nil || !ok {
		st.Close()
		t.Fatalf("store checkpoint %d (ok %v, err %v)", cp, ok, err)
	}
	var last []byte
	for _, r := range h.ReadTopic(changelog) {
		if r.Partition == part && string(r.Key) == "account/"+id && r.Offset < cp {
			last = r.Value
		}
	}
	got, ok, err := st.Get([]byte("account/" + id))
	if err != nil || !ok || !bytes.Equal(got, last) {
		st.Close()
		t.Fatalf("store at checkpoint %d holds %d bytes (ok %v, err %v), not the changelog's snapshot as of it (%d bytes)", cp, len(got), ok, err, len(last))
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// Restarted on that store: the catch-up brings the erasure.
	w = h.StartProcessor("w0", w.StateDir, withMaster(mk), func(c *topology.Config) { c.StateCacheEntries = -1 })
	if rep := h.Send(cmd("account", id, "Deposit", `{"amount":1}`)); rep.Code != topology.CodeErased {
		t.Fatalf("a deposit after the restart: %+v, want code %s", rep, topology.CodeErased)
	}
	wantContiguous(t, h)
}
