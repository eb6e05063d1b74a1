package topology

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/kcqrs/kcqrs/snapshots"
)

// Applying committed batches to the stores, off the command path.
//
// Once a transaction committed, its snapshots are written to each
// partition's Pebble store by one applier goroutine per session, while the
// run loop polls and handles the next batch. The rules that made the
// synchronous write safe stay:
//
//   - A batch is queued only after its transaction committed: the store is
//     never ahead of Kafka.
//   - One goroutine applies the jobs in commit order, so a store's
//     checkpoint only moves forward.
//   - Until its job is applied, a snapshot stays in its partition's overlay
//     (partitionState.overlay), which load reads before the store: a load
//     never sees a value older than the last commit, also when the state
//     cache does not hold the aggregate (evicted, or disabled).
//   - A failed write leaves the store behind Kafka, which is safe; every
//     later job of that store is skipped until it is caught up (applying one
//     would move the checkpoint past the failed batch's snapshots), and the
//     run loop makes the partition suspect. The overlay keeps serving the
//     committed values until the catch-up.
//   - Whatever else reads the checkpoint or writes the store (a catch-up,
//     handing a revoked store to the tailer, closing) drains the queue
//     first (Processor.drainApplies).
//
// The queue is bounded (maxQueuedApplies): a run loop that outruns the
// disk waits for the oldest job, so the overlay stays bounded too.

// maxQueuedApplies bounds the committed batches queued for the applier
// (applied or not, until the run loop collects them).
const maxQueuedApplies = 2

// applyPart is one partition's share of a committed batch.
type applyPart struct {
	ps    *partitionState
	epoch uint64 // ps.applyEpoch when queued: a catch-up starts a new one
	keys  []string
	vals  [][]byte
	next  int64 // checkpoint: one past the batch's last snapshot in the changelog
	// err is set by the applier: the write failed, or was skipped after
	// an earlier failure of the same store (errApplySkipped).
	err error
}

// applyJob is one committed batch.
type applyJob struct {
	seq   uint64
	parts []applyPart
}

// overlayEntry is a committed snapshot whose write is queued.
type overlayEntry struct {
	val []byte
	seq uint64 // of its job
}

// errApplySkipped: an earlier write to the same store failed; this one
// would have moved the checkpoint past the snapshots it lacks.
var errApplySkipped = errors.New("skipped after an earlier failed write to the same store")

type applier struct {
	jobs chan *applyJob
	done chan *applyJob
	wg   sync.WaitGroup
	hook func(partition int32) error // a test's failing (or blocking) write
	// backlog counts jobs queued and not yet applied (Processor.applyBacklog).
	backlog *atomic.Int64

	// Run loop only.
	pending int    // jobs queued and not yet collected
	seq     uint64 // of the last job
	closed  bool
}

func newApplier(hook func(int32) error, backlog *atomic.Int64) *applier {
	a := &applier{
		jobs:    make(chan *applyJob, maxQueuedApplies),
		done:    make(chan *applyJob, maxQueuedApplies),
		hook:    hook,
		backlog: backlog,
	}
	a.wg.Add(1)
	go a.run()
	return a
}

// run applies the jobs in order.
func (a *applier) run() {
	defer a.wg.Done()
	// broken: stores whose write failed, with the epoch of the failure.
	broken := map[*partitionState]uint64{}
	var wb snapshots.Batch
	for job := range a.jobs {
		for i := range job.parts {
			ap := &job.parts[i]
			if e, ok := broken[ap.ps]; ok {
				if e == ap.epoch {
					ap.err = errApplySkipped
					continue
				}
				delete(broken, ap.ps) // caught up since
			}
			if ap.err = a.write(&wb, ap); ap.err != nil {
				broken[ap.ps] = ap.epoch
			}
		}
		a.backlog.Add(-1)
		a.done <- job
	}
}

// write applies one partition's snapshots and checkpoint in one atomic
// Pebble batch.
func (a *applier) write(wb *snapshots.Batch, ap *applyPart) error {
	if a.hook != nil {
		if err := a.hook(ap.ps.p); err != nil {
			return err
		}
	}
	wb.Reset()
	for i, k := range ap.keys {
		wb.PutString(k, ap.vals[i])
	}
	wb.SetCheckpoint(ap.next)
	return ap.ps.store.Apply(wb)
}

// queueApply hands a committed batch to the applier, first waiting for the
// oldest queued one when the queue is full.
func (p *Processor) queueApply(job *applyJob) {
	a := p.apply
	for a.pending >= maxQueuedApplies {
		p.collectApplied(<-a.done)
	}
	a.pending++
	a.backlog.Add(1)
	a.jobs <- job // never blocks: at most maxQueuedApplies are pending
}

// collectDoneApplies collects the jobs applied so far, without waiting.
func (p *Processor) collectDoneApplies() {
	a := p.apply
	for a != nil && a.pending > 0 {
		select {
		case job := <-a.done:
			p.collectApplied(job)
		default:
			return
		}
	}
}

// drainApplies waits until every queued job is applied (or skipped) and
// collected: the stores then hold every committed batch whose write
// succeeded, and the partitions of failed writes are suspect.
func (p *Processor) drainApplies() {
	a := p.apply
	if h := p.cfg.hooks; h != nil && h.drainWait != nil && a != nil && a.pending > 0 {
		h.drainWait()
	}
	for a != nil && a.pending > 0 {
		p.collectApplied(<-a.done)
	}
}

// collectApplied takes a finished job back: written snapshots leave the
// overlay; a failed or skipped write makes its partition suspect (its
// overlay stays until the catch-up, which drains the queue first).
func (p *Processor) collectApplied(job *applyJob) {
	p.apply.pending--
	for i := range job.parts {
		ap := &job.parts[i]
		ps := ap.ps
		if p.parts[ps.p] != ps || ps.applyEpoch != ap.epoch {
			continue // revoked, or caught up since
		}
		if ap.err != nil {
			if !errors.Is(ap.err, errApplySkipped) {
				// The store is now behind the changelog, which is safe:
				// it is caught up from its checkpoint before its next
				// use (the overlay serves the committed values until).
				p.log.Error("store write failed; will catch up from the changelog", "partition", ps.p, "err", ap.err)
			}
			p.markSuspect(ps, ap.next, fmt.Sprintf("store write failed: %v", ap.err))
			continue
		}
		for _, k := range ap.keys {
			if e, ok := ps.overlay[k]; ok && e.seq == job.seq {
				delete(ps.overlay, k)
			}
		}
	}
}

// closeApplier drains the queue and stops the applier goroutine.
func (p *Processor) closeApplier() {
	a := p.apply
	if a == nil || a.closed {
		return
	}
	p.drainApplies()
	a.closed = true
	close(a.jobs)
	a.wg.Wait()
	p.apply = nil
}

// quiesceStore prepares a partition's store for a catch-up: every queued
// write is applied (or failed), and the overlay is forgotten (the catch-up
// brings the store past it). Writes queued from here on belong to a new
// epoch, which an earlier failure does not skip.
func (p *Processor) quiesceStore(ps *partitionState) {
	p.drainApplies()
	ps.overlay = nil
	ps.applyEpoch++
}

// storeGet reads a snapshot as of the last commit: the overlay of queued
// writes first, then the store.
func (p *Processor) storeGet(ps *partitionState, key string) ([]byte, bool, error) {
	if e, ok := ps.overlay[key]; ok {
		return e.val, true, nil
	}
	return ps.store.Get([]byte(key))
}
