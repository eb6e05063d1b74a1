package topology_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// Tests of the store writes queued after a commit (applier.go): each one
// holds the applier back with the store-write hook while the run loop goes
// on, the situations the queue must get right.

// writeGate holds store writes back while closed, and can make the write
// it releases fail.
type writeGate struct {
	mu      sync.Mutex
	closed  bool
	release chan struct{}
	failOne atomic.Bool // the next released write fails
	held    atomic.Int32
}

func newWriteGate() *writeGate { return &writeGate{release: make(chan struct{})} }

func (g *writeGate) close() {
	g.mu.Lock()
	g.closed = true
	g.release = make(chan struct{})
	g.mu.Unlock()
}

func (g *writeGate) open() {
	g.mu.Lock()
	if g.closed {
		g.closed = false
		close(g.release)
	}
	g.mu.Unlock()
}

func (g *writeGate) hook(int32) error {
	g.mu.Lock()
	closed, release := g.closed, g.release
	g.mu.Unlock()
	if closed {
		g.held.Add(1)
		<-release
	}
	if g.failOne.CompareAndSwap(true, false) {
		return errors.New("injected write failure")
	}
	return nil
}

// A command on an aggregate whose last commit is not yet in the store (its
// write held back, no state cache) loads the committed state from the
// queue's overlay; before the writes left the command path, it waited for
// the write instead.
func TestLoadAfterCommitSeesQueuedWrite(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	gate := newWriteGate()
	t.Cleanup(gate.open)
	w := h.StartProcessor("w0", "", func(c *topology.Config) {
		c.StateCacheEntries = -1 // every load reads the store (or the overlay)
		topology.FailStoreWrite(c, gate.hook)
	})
	openAccountID(t, h, "ov")
	gate.close()
	wantStatus(t, h.Send(cmd("account", "ov", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	pollUntil(t, "the write of the deposit to be held", 30*time.Second, func() bool { return gate.held.Load() > 0 })
	// Held: the store still has version 1.
	rep, err := sendWithin(h, cmd("account", "ov", "Deposit", `{"amount":1}`), 20*time.Second)
	if err != nil {
		t.Fatalf("a command waited for the previous batch's store write: %v", err)
	}
	wantStatus(t, rep, wire.StatusAccepted, 3)
	if topology.ApplyBacklog(w.Processor) == 0 {
		t.Fatal("no store write queued while the gate is closed")
	}
	gate.open()
	wantStatus(t, h.Send(cmd("account", "ov", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 4)
	pollUntil(t, "the queue to empty", 30*time.Second, func() bool { return topology.ApplyBacklog(w.Processor) == 0 })
	// Restarted on the same store: it holds every committed version.
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	w2 := h.StartProcessor("w0", w.StateDir, func(c *topology.Config) { c.StateCacheEntries = -1 })
	wantStatus(t, h.Send(cmd("account", "ov", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 5)
	wantContiguous(t, h)
	if w2.Err() != nil {
		t.Fatal(w2.Err())
	}
}

// A failed store write with a later batch of the same partition queued
// behind it: the later write must not land (its checkpoint would claim the
// failed batch's snapshots), the partition is caught up from the changelog,
// and no version is lost or repeated.
func TestFailedWriteSkipsLaterQueuedWrites(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	gate := newWriteGate()
	t.Cleanup(gate.open)
	w := h.StartProcessor("w0", "", func(c *topology.Config) {
		c.StateCacheEntries = -1
		topology.FailStoreWrite(c, gate.hook)
	})
	a := "fa"
	b := "fb" // on a's partition
	for topology.PartitionFor([]byte(b), partitions) != topology.PartitionFor([]byte(a), partitions) {
		b += "b"
	}
	openAccountID(t, h, a)
	openAccountID(t, h, b)
	pollUntil(t, "the opens to be written", 30*time.Second, func() bool { return topology.ApplyBacklog(w.Processor) == 0 })

	gate.close()
	gate.failOne.Store(true)
	wantStatus(t, h.Send(cmd("account", a, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	wantStatus(t, h.Send(cmd("account", b, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	pollUntil(t, "both batches queued", 30*time.Second, func() bool { return topology.ApplyBacklog(w.Processor) >= 2 })
	gate.open() // a's batch fails, b's must be skipped
	pollUntil(t, "both writes done", 30*time.Second, func() bool { return topology.ApplyBacklog(w.Processor) == 0 })

	// b first: its commit makes the run loop see the failure, and the
	// partition is caught up before a is loaded again, from the store. a's
	// deposit is in no write that landed: had b's write landed, the store's
	// checkpoint would be past it, and a would get version 2 again.
	wantStatus(t, h.Send(cmd("account", b, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	wantStatus(t, h.Send(cmd("account", a, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	pollUntil(t, "the queue to empty", 30*time.Second, func() bool { return topology.ApplyBacklog(w.Processor) == 0 })
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	// The same store, no state cache: what the store and the catch-up hold.
	w2 := h.StartProcessor("w0", w.StateDir, func(c *topology.Config) { c.StateCacheEntries = -1 })
	wantStatus(t, h.Send(cmd("account", a, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 4)
	wantStatus(t, h.Send(cmd("account", b, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 4)
	wantContiguous(t, h)
	if w2.Err() != nil {
		t.Fatal(w2.Err())
	}
}

// A rebalance while a committed batch's write is held back: the revoked
// stores are handed over only after the queue drained, the new owner reads
// the changelog, and when the partitions come back every aggregate
// continues at the right version.
func TestRebalanceWithQueuedWrite(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	gate := newWriteGate()
	t.Cleanup(gate.open)
	// The backlog of queued writes whenever a revoked store is handed to
	// the tailer: it must be empty (a tailer writing a store under a
	// queued write can have that write land over its own newer
	// snapshots). Without the drain on revoke, the stores were handed
	// over with the held write still queued.
	var w0p atomic.Pointer[topology.Processor]
	var handed, handedUnderBacklog, drainWaits atomic.Int64
	w0 := h.StartProcessor("w0", "", func(c *topology.Config) {
		c.StateCacheEntries = -1
		topology.FailStoreWrite(c, gate.hook)
		topology.OnDrainWait(c, func() { drainWaits.Add(1) })
		topology.OnHandOver(c, func(int32) {
			handed.Add(1)
			if p := w0p.Load(); p != nil && topology.ApplyBacklog(p) > 0 {
				handedUnderBacklog.Add(1)
			}
		})
	})
	w0p.Store(w0.Processor)
	ids := openPerPartition(t, h, "rq")
	pollUntil(t, "the opens to be written", 30*time.Second, func() bool { return topology.ApplyBacklog(w0.Processor) == 0 })
	gate.close()
	wantStatus(t, h.Send(cmd("account", ids[0], "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	pollUntil(t, "the write to be held", 30*time.Second, func() bool { return gate.held.Load() > 0 })
	drainsBefore := drainWaits.Load()

	w1 := h.StartProcessor("w1", "")
	pollUntil(t, "w1 to take partitions", 90*time.Second, func() bool { return len(w1.Assigned()) > 0 })
	// The write stays held until w0 dealt with the revocation: it waits
	// for the write (the drain), or hands the stores over without it.
	pollUntil(t, "w0 to let the revoked partitions go", 90*time.Second, func() bool { return drainWaits.Load() > drainsBefore || handed.Load() > 0 })
	gate.open()
	// Every aggregate, wherever its partition went, at version 3.
	for _, id := range ids {
		wantStatus(t, h.Send(cmd("account", id, "Deposit", `{"amount":1}`)), wire.StatusAccepted, map[bool]int64{true: 3, false: 2}[id == ids[0]])
	}
	// Everything back to w0: stores it kept catch up from their checkpoints.
	if err := w1.Stop(); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "w0 to own every partition", 90*time.Second, func() bool { return len(w0.Assigned()) == partitions })
	for _, id := range ids {
		wantStatus(t, h.Send(cmd("account", id, "Deposit", `{"amount":1}`)), wire.StatusAccepted, map[bool]int64{true: 4, false: 3}[id == ids[0]])
	}
	if handed.Load() == 0 {
		t.Fatal("w0 handed no revoked store to its tailer")
	}
	if n := handedUnderBacklog.Load(); n > 0 {
		t.Fatalf("%d revoked store(s) handed to the tailer while a write to the stores was still queued", n)
	}
	wantContiguous(t, h)
	if w0.Err() != nil {
		t.Fatal(w0.Err())
	}
}
