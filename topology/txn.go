package topology

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/wire"
)

// runBatch runs one transaction: the records polled so far, plus whatever is
// already buffered, up to the batch limit and CommitInterval. Records of
// partitions whose store is not ready are deferred before Begin (restore.go):
// nothing that can take seconds runs inside the transaction. It reports
// whether a transaction ran and whether it committed.
func (p *Processor) runBatch(ctx context.Context, first kgo.Fetches) (ran, committed bool, err error) {
	first = p.deferUnready(ctx, first, true)
	p.sess.AllowRebalance() // the rewinds are set (run.go: BlockRebalanceOnPoll)
	if first.NumRecords() == 0 {
		return false, false, nil
	}
	// Reply-topic metadata is looked up before Begin (replyroute.go); only
	// records polled into an open transaction may still need a lookup, and
	// each one is bounded by Config.ReplyLookupTimeout.
	p.prefetchReplyTopics(first)
	p.prepareSchemas(ctx, first, false)
	committed, err = p.runTxn(ctx, first)
	return true, committed, err
}

func (p *Processor) runTxn(ctx context.Context, first kgo.Fetches) (bool, error) {
	if err := p.sess.Begin(); err != nil {
		if fencedError(err) {
			return false, p.fenced("begin transaction", err)
		}
		// franz-go refuses to begin once an End failed the producer id
		// with an error it cannot recover from (INVALID_TXN_STATE, say).
		return false, fmt.Errorf("%w: begin transaction: %w", errRecreateSession, err)
	}
	limit := p.batchLimit()
	b := &batch{stages: p.newStageClock()}
	deadline := time.Now().Add(p.cfg.CommitInterval)
	n := p.processFetches(ctx, b, first)
	for n < limit && p.sess.Client().BufferedFetchRecords() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		pctx, cancel := context.WithDeadline(ctx, deadline)
		more := p.sess.PollRecords(pctx, limit-n)
		p.polledAt = time.Now()
		cancel()
		more.EachError(func(t string, _ int32, err error) { p.skipUndecompressable(t, err) })
		more = p.deferUnready(ctx, more, false)
		p.sess.AllowRebalance()     // a revoke from here on aborts the transaction
		p.prefetchReplyTopics(more) // inside the transaction: bounded per lookup
		p.prepareSchemas(ctx, more, true)
		n += p.processFetches(ctx, b, more)
	}
	// The pointers of every batch skipped so far, those the polls above
	// found included: SetOffsets moved the session past them, so this
	// transaction commits offsets past them, and their pointers must commit
	// with it (left to the next transaction, a stop or a revoke before it
	// lost them for good).
	skipped := len(p.undecompressable)
	p.deadLetterUndecompressable(b)
	p.flushSnapshots(b)
	if h := p.cfg.hooks; h != nil && h.beforeEnd != nil {
		h.beforeEnd(b.partitions)
	}

	// End even when ctx is canceled, so a shutdown commits (or aborts) what
	// it did instead of leaving a transaction open until it times out.
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.TransactionTimeout)
	defer cancel()
	// Flush before deciding: a produce that fails during End's own flush
	// would otherwise go unnoticed, and franz-go can commit a transaction
	// in which a record failed (measured with a kfake Produce fault: the
	// reply, snapshot and offset committed without the command's event).
	if err := p.sess.Client().Flush(flushCtx); err != nil {
		b.fail(fmt.Errorf("flush: %w", err))
	}
	try := kgo.TryCommit
	if b.failed() != nil {
		try = kgo.TryAbort
		p.log.Error("aborting transaction: a record failed", "err", b.failed(), "records", n)
	}
	endStart := time.Now()
	// End gets a context of its own: a flush that used up its own timeout (a record
	// stuck until the transaction timeout) must end in an abort, not in an
	// expired End that stops the worker.
	endCtx, cancelEnd := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.TransactionTimeout)
	defer cancelEnd()
	committed, err := p.sess.End(endCtx, try)
	endDone := time.Now()
	defer p.afterEndHook(b, &committed)
	if committed && b.failed() != nil {
		// franz-go refuses to commit a transaction in which a record failed,
		// so this should not happen. If it does, Kafka holds the truth: never
		// apply a batch known to be incomplete, catch the stores up instead.
		p.log.Error("transaction committed although a record failed; re-reading the changelog", "err", b.failed())
		committed = false
	}
	p.cfg.Observer.TransactionEnded(n, committed, time.Since(endStart))
	p.mu.Lock()
	p.stats.Transactions++
	if !committed {
		p.stats.Aborted++
		if try == kgo.TryCommit {
			p.stats.Unconfirmed++ // wanted a commit, End did not confirm one
		}
	}
	p.mu.Unlock()
	p.noteOutcome(b, n, committed)
	if committed {
		b.stages.committed(endDone)
	}
	if !committed {
		// Not committed is not "aborted": the broker may have applied the
		// commit (EndTxn answered with an error, or a response lost). Every
		// partition of the batch is suspect until caught up from the
		// changelog, which then holds whatever Kafka decided.
		p.forgetBatchKeys(b)
		p.suspectBatch(b)
		if err != nil && fencedError(err) {
			return false, p.fenced("end transaction", err)
		}
		if err != nil {
			// Any other error (retriable or not: a TxnOffsetCommit or
			// EndTxn that timed out, INVALID_TXN_STATE, an expired
			// context): franz-go aborted what it could and rewound the
			// session to the committed offsets, so the batch comes again
			// like after any abort, after a backoff (endFailed). A
			// producer left unusable fails the next Begin, which
			// recreates the session (run.go).
			p.endFailed = true
			p.log.Warn("transaction not committed: end failed; the batch will be consumed again", "err", err, "retriable", kerr.IsRetriable(err), "records", n)
			// franz-go keeps the failed transaction for a TryAbort retry,
			// which heals the producer when its id can be reloaded (an
			// unconfirmed outcome); otherwise Begin fails next.
			if aerr := p.sess.Client().EndTransaction(endCtx, kgo.TryAbort); aerr != nil {
				p.log.Warn("abort after a failed end", "err", aerr)
			}
			return false, nil
		}
		p.log.Info("transaction not committed; the batch will be consumed again", "records", n, "partitions", b.partitions, "reason", b.failed())
		return false, nil
	}
	p.undecompressable = p.undecompressable[skipped:]
	p.mu.Lock()
	p.stats.Commands += int64(n)
	for s, c := range b.replies {
		p.stats.Replies[s] += c
	}
	p.stats.Duplicates += b.duplicates
	p.stats.Events += b.events
	p.stats.Snapshots += b.snapshots
	p.stats.DeadLetters += b.deadLetters
	p.mu.Unlock()
	p.applyCommitted()
	if err != nil {
		return true, fmt.Errorf("topology: end transaction: %w", err)
	}
	return true, nil
}

func (p *Processor) afterEndHook(b *batch, committed *bool) {
	h := p.cfg.hooks
	if h == nil || h.afterEnd == nil {
		return
	}
	p.drainApplies() // the hook reads the checkpoints the batch left
	cps := map[int32]int64{}
	for _, part := range b.partitions {
		if ps := p.parts[part]; ps != nil {
			if cp, ok, err := ps.store.Checkpoint(); err == nil && ok {
				cps[part] = cp
			}
		}
	}
	h.afterEnd(*committed, cps)
}

// batch collects the effects of one transaction.
type batch struct {
	mu          sync.Mutex
	err         error
	replies     map[wire.Status]int64
	duplicates  int64
	events      int64
	snapshots   int64
	deadLetters int64
	partitions  []int32 // of the records in the batch
	// first and last record of the batch, for isolating a suspect
	// record (isolate.go).
	records []*kgo.Record
	// stages of its commands, for a StageObserver (stages.go); nil when
	// nobody observes them.
	stages *stageClock
	// keys are the subjects whose data key was created or erased in the
	// batch (personal.go): forgotten unless it commits.
	keys []string
	// failOnErr is the promise of records without a callback of their own.
	failOnErr func(*kgo.Record, error)
}

func (b *batch) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
}

func (b *batch) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *batch) countReply(s wire.Status) {
	if b.replies == nil {
		b.replies = map[wire.Status]int64{}
	}
	b.replies[s]++
}

// produce produces r into the open transaction; a failure fails the batch,
// and done, when not nil, runs once r is acknowledged.
func (p *Processor) produce(b *batch, r *kgo.Record, done func(*kgo.Record)) {
	if done == nil {
		p.produceWith(r, b.promise())
		return
	}
	p.produceWith(r, func(r *kgo.Record, err error) {
		if err != nil {
			b.fail(&produceError{topic: r.Topic, partition: r.Partition, err: err})
			return
		}
		done(r)
	})
}

func (p *Processor) produceWith(r *kgo.Record, promise func(*kgo.Record, error)) {
	if h := p.cfg.hooks; h != nil && h.produce != nil {
		h.produce(r, promise)
		return
	}
	p.sess.Produce(context.Background(), r, promise)
}

// promise is the batch's promise for records with nothing to do once
// acknowledged: one closure per batch, not per record.
func (b *batch) promise() func(*kgo.Record, error) {
	if b.failOnErr == nil {
		b.failOnErr = func(r *kgo.Record, err error) {
			if err != nil {
				b.fail(&produceError{topic: r.Topic, partition: r.Partition, err: err})
			}
		}
	}
	return b.failOnErr
}

// processFetches handles the records of ready partitions (deferUnready has
// taken the others out).
func (p *Processor) processFetches(_ context.Context, b *batch, fetches kgo.Fetches) int {
	n := 0
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		p.cfg.Observer.Fetched(fp.Partition, fp.Records[len(fp.Records)-1].Offset+1, fp.LastStableOffset)
		b.partitions = append(b.partitions, fp.Partition)
		ps := p.parts[fp.Partition]
		for _, r := range fp.Records {
			if ps.stopAt >= 0 && r.Offset >= ps.stopAt {
				break // deferred for a rebuild: comes again after it
			}
			b.records = append(b.records, r)
			if p.isolatedPoison(b, ps, r) {
				n++
				continue
			}
			p.handle(b, ps, r)
			b.stages.decided(r, p.polledAt)
			n++
		}
	})
	return n
}

// flushSnapshots produces one snapshot per aggregate touched in the batch.
func (p *Processor) flushSnapshots(b *batch) {
	var now time.Time
	for _, ps := range p.parts {
		var promise func(*kgo.Record, error) // one per partition and batch
		for _, a := range ps.order {
			if !a.dirty {
				continue
			}
			enc, err := p.reg.encodeSnapshot(a)
			if err != nil {
				b.fail(fmt.Errorf("snapshot %q: %w", a.key, err))
				continue
			}
			a.encoded = enc
			b.snapshots++
			if promise == nil {
				ps := ps
				promise = func(r *kgo.Record, err error) {
					if err != nil {
						b.fail(&produceError{topic: r.Topic, partition: r.Partition, err: err})
						return
					}
					p.mu.Lock()
					if r.Offset > ps.lastOffset {
						ps.lastOffset = r.Offset
					}
					p.mu.Unlock()
				}
			}
			if now.IsZero() {
				now = time.Now()
			}
			if a.keyBytes == nil {
				a.keyBytes = []byte(a.key) // kept while the state is cached
			}
			p.produceWith(&kgo.Record{
				Topic:     p.cfg.Topics.Changelog,
				Partition: ps.p,
				Key:       a.keyBytes,
				Value:     enc,
				Timestamp: now,
			}, promise)
		}
	}
}

// suspectBatch marks every partition the batch touched suspect and forgets
// the batch-local state: the stores and the state cache may be behind
// what the broker decided.
func (p *Processor) suspectBatch(b *batch) {
	touched := map[int32]bool{}
	for _, part := range b.partitions {
		touched[part] = true
	}
	for part, ps := range p.parts {
		p.mu.Lock()
		last := ps.lastOffset
		p.mu.Unlock()
		if touched[part] || len(ps.order) > 0 || last >= 0 {
			p.markSuspect(ps, last+1, "transaction not confirmed")
		}
		ps.pending, ps.order, ps.lastOffset = nil, nil, -1
	}
}

// markSuspect takes a partition out of processing until its store is caught
// up from the changelog past mustReach (restore.go).
func (p *Processor) markSuspect(ps *partitionState, mustReach int64, why string) {
	if ps.state != suspect {
		p.log.Info("partition store suspect; catching up from the changelog before its next use", "partition", ps.p, "why", why, "must_reach", mustReach)
	}
	ps.state = suspect
	ps.mustReach = max(ps.mustReach, mustReach)
	p.states.dropPartition(ps.p)
	p.mu.Lock()
	if pr := p.progress[ps.p]; pr != nil && pr.Role == RoleActive {
		pr.Ready = false
	}
	p.mu.Unlock()
}

// applyCommitted queues the committed batch's snapshots and changelog
// offset for each partition's store, one atomic Pebble batch per partition
// (applier.go). Only now: the store is never ahead of the changelog. Until
// written, the snapshots are read from the partition's overlay.
func (p *Processor) applyCommitted() {
	p.collectDoneApplies()
	var job *applyJob
	for _, ps := range p.parts {
		p.mu.Lock()
		last := ps.lastOffset
		p.mu.Unlock()
		if len(ps.order) > 0 && last >= 0 {
			if job == nil {
				p.apply.seq++
				job = &applyJob{seq: p.apply.seq}
			}
			ap := applyPart{ps: ps, epoch: ps.applyEpoch, next: last + 1}
			for _, a := range ps.order {
				if a.dirty && a.encoded != nil {
					ap.keys = append(ap.keys, a.key)
					ap.vals = append(ap.vals, a.encoded)
					if ps.overlay == nil {
						ps.overlay = map[string]overlayEntry{}
					}
					ps.overlay[a.key] = overlayEntry{val: a.encoded, seq: job.seq}
				}
			}
			job.parts = append(job.parts, ap)
		}
		p.cacheCommitted(ps)
		ps.pending, ps.order, ps.lastOffset = nil, nil, -1
	}
	if job != nil {
		p.queueApply(job)
	}
}
