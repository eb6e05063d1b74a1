package topology

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/snapshots"
)

// Run processes commands until ctx is canceled (then it ends the open
// transaction, leaves the group and closes its stores, returning nil) or a
// non-retryable error happens.
func (p *Processor) Run(ctx context.Context) (err error) {
	defer func() {
		if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			err = nil // a stop requested while starting is a stop, not a failure
		}
	}()
	p.admCl, err = kgo.NewClient(p.clientOpts()...)
	if err != nil {
		return fmt.Errorf("topology: admin client: %w", err)
	}
	defer p.admCl.Close()
	defer p.startSchemaReads()() // before the admin client closes
	p.adm = kadm.NewClient(p.admCl)
	p.partitions, err = p.cfg.prepareTopics(ctx, p.admCl)
	if err != nil {
		return err
	}
	p.topics = newTopicCache(p.admCl)
	if err := p.publishSchemas(ctx); err != nil {
		// Not fatal for this build: an older one could not learn them.
		p.log.Warn("schemas not published: an older build meeting this build's data will not read it", "err", err)
	}
	// Every key once, before joining: a wrong master key stops the start.
	if err := p.loadKeys(ctx, -1); err != nil {
		return err
	}

	p.cache = snapshots.NewCache(p.cfg.CacheBytes)
	defer p.cache.Unref()
	if p.cfg.StaticMembership {
		// franz-go does not leave the group for a static member on Close;
		// a stopping worker leaves explicitly (after Close, deferred
		// first) so its partitions move at once.
		defer p.leaveStatic()
	}
	for recreated := 0; ; recreated++ {
		began := time.Now()
		err := p.runSession(ctx)
		if !errors.Is(err, errRecreateSession) {
			return err
		}
		if time.Since(began) > time.Minute {
			recreated = 0 // a session that lasted: not a loop
		}
		// The transactional producer is unusable but not fenced: a new
		// session (a new client with the same transactional id) aborts
		// whatever our old one left open, and the stores are caught up
		// from the changelog again, as after a restart.
		wait := min(abortBackoffBase<<min(recreated, 6), abortBackoffMax)
		p.log.Warn("recreating the transactional session", "err", err, "wait", wait)
		p.mu.Lock()
		p.stats.SessionsRecreated++
		p.mu.Unlock()
		p.resetSession()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// errRecreateSession ends a session whose transactional producer cannot
// begin again for a reason other than a fence (fencedError).
var errRecreateSession = errors.New("topology: the transactional producer needs a new session")

// fencedError reports whether err from Begin or End means that this worker
// must stop: another producer took its transactional id (a zombie must
// never write again), or it is not allowed to use it. Every other error
// leaves the outcome of the transaction unknown: the batch's partitions are
// suspect and caught up, and the worker goes on (in a new session if the
// producer cannot begin again).
func fencedError(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed) ||
		errors.Is(err, kerr.ClusterAuthorizationFailed) ||
		errors.Is(err, kerr.TransactionCoordinatorFenced) ||
		errors.Is(err, kgo.ErrClientClosed)
}

// fenced wraps an error that stops the worker (fencedError), saying what a
// fence by a newer producer means: the usual cause is a second worker
// started with the same instance id (and so the same transactional id),
// which the operator must fix; restarting both would only make them fence
// each other in turn.
func (p *Processor) fenced(op string, err error) error {
	txnID := p.cfg.Group + "-" + p.cfg.InstanceID
	if errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.TransactionCoordinatorFenced) {
		return fmt.Errorf("topology: %s: %w: a newer producer took transactional id %q: another worker is running with instance id %q "+
			"(each worker needs its own; two that share one fence each other), or this worker was paused long enough to be replaced", op, err, txnID, p.cfg.InstanceID)
	}
	return fmt.Errorf("topology: %s (transactional id %q): %w", op, txnID, err)
}

// FencedError is fencedError for the saga, which classifies its own Begin
// and End errors the same way.
func FencedError(err error) bool { return fencedError(err) }

// resetSession forgets what the run loop knew of the last session: its
// assignment, stores and caches (closed by runSession), deferred partitions
// and abort history. Counters stay.
func (p *Processor) resetSession() {
	p.mu.Lock()
	clear(p.assigned)
	for part, ps := range p.progress {
		if ps.Role == RoleActive {
			delete(p.progress, part)
		}
	}
	clear(p.active)
	clear(p.hanging)
	p.joined = false
	p.tail = newTailer(p) // the old one stopped with the session
	p.mu.Unlock()
	clear(p.deferred)
	p.aborts, p.lastAbort, p.abortReasons, p.isolate = 0, "", nil, nil
	p.states = newStateCache(p.cfg.StateCacheEntries)
}

// runSession runs one transactional session: from joining the group to
// ctx's end, an error, or errRecreateSession.
func (p *Processor) runSession(ctx context.Context) (err error) {
	defer p.closeStores()
	var applyHook func(int32) error
	if h := p.cfg.hooks; h != nil {
		applyHook = h.storeApply
	}
	p.apply = newApplier(applyHook, &p.applyBacklog)
	defer p.closeApplier() // before closeStores: the queued writes land first
	var static []kgo.Opt
	if p.cfg.StaticMembership {
		static = append(static, kgo.InstanceID(p.cfg.InstanceID))
	}
	if p.cfg.GroupProtocol == GroupProtocolConsumer {
		// KIP-848: franz-go opts in with the server-side balancer (the
		// cooperative sticky balancer maps to the broker's "uniform").
		static = append(static, kgo.ServerSideBalancer())
	}
	// Abort what a previous incarnation left open before joining (fence.go).
	if err := FencePrevious(ctx, p.admCl, p.cfg.Group+"-"+p.cfg.InstanceID, p.cfg.TransactionTimeout); err != nil {
		p.log.Warn("could not fence the previous incarnation's transaction; its partitions may wait for the transaction timeout", "err", err)
	}
	p.sess, err = kgo.NewGroupTransactSession(append(p.clientOpts(append(static,
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.ConsumeTopics(p.cfg.Topics.Commands),
		kgo.TransactionalID(p.cfg.Group+"-"+p.cfg.InstanceID),
		// The client id names the worker in the group's description,
		// which orders the workers for standby placement (standby.go).
		kgo.ClientID(p.cfg.Group+"-"+p.cfg.InstanceID),
		// Cooperative: a rebalance moves only the partitions that must
		// move; the others keep processing (franz-go's transact session
		// aborts the open transaction only if something was revoked).
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.SessionTimeout(p.cfg.SessionTimeout),
		kgo.RebalanceTimeout(p.cfg.RebalanceTimeout),
		kgo.HeartbeatInterval(p.cfg.HeartbeatInterval),
		kgo.TransactionTimeout(p.cfg.TransactionTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		// A resumed partition waits for the fetch in flight: keep that
		// wait short (Kafka's consumer default, not franz-go's 5s).
		kgo.FetchMaxWait(fetchMaxWait),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.OnPartitionsAssigned(p.onAssigned),
		kgo.OnPartitionsRevoked(p.onRevoked),
		kgo.OnPartitionsLost(p.onRevoked),
		// No rebalance runs between a poll and the next AllowRebalance:
		// deferUnready rewinds partitions with SetOffsets, which must not
		// race a revoke (the rewind could land on a partition already
		// handed to another worker, or on this worker's next assignment
		// of it, whose offsets come from the group: a stale rewind there
		// would re-run commands another owner committed). Every poll is
		// followed by deferUnready and AllowRebalance before anything
		// slow, so rebalances wait for microseconds, never for a
		// transaction (restore.go).
		kgo.BlockRebalanceOnPoll(),
	)...), p.cfg.SessionClientOpts...)...)
	if err != nil {
		return fmt.Errorf("topology: transact session: %w", err)
	}
	defer p.sess.CloseAllowingRebalance() // leaves the group
	p.log.Info("processor started", "group", p.cfg.Group, "commands", p.cfg.Topics.Commands, "partitions", p.partitions)

	bgCtx, stopBg := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() {
		stopBg()
		bg.Wait()
		p.mu.Lock()
		p.running = false
		p.mu.Unlock()
	}()
	bg.Add(3)
	go func() { defer bg.Done(); p.tail.run(bgCtx) }()
	go func() { defer bg.Done(); p.watchHanging(bgCtx) }()
	go func() { defer bg.Done(); p.watchOwnership(bgCtx) }()
	p.mu.Lock()
	p.running = true
	p.mu.Unlock()

	for {
		p.closeRevoked()
		p.resumeReady(ctx)
		p.catchUpSuspect(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fetches := p.poll(ctx, p.batchLimit())
		if ctx.Err() != nil {
			return nil
		}
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) {
				return // poll's own wake-up
			}
			if p.skipUndecompressable(t, err) {
				return
			}
			p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
		})
		p.noteDelivered(fetches)
		p.restartStuckFetches(ctx)
		if fetches.NumRecords() == 0 {
			p.sess.AllowRebalance()
			continue
		}
		ran, committed, err := p.runBatch(ctx, fetches)
		if err != nil {
			return err
		}
		if ran {
			p.afterBatch(ctx, committed)
		}
	}
}

// poll waits for records, waking up every idlePoll (deferredPoll while
// partitions are deferred), so that an idle loop still hands revoked stores
// to the tailer and resumes stores the tailer caught up.
func (p *Processor) poll(ctx context.Context, max int) kgo.Fetches {
	wait := idlePoll
	if len(p.deferred) > 0 {
		wait = deferredPoll
	}
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	f := p.sess.PollRecords(pctx, max)
	p.polledAt = time.Now()
	return f
}

const (
	fetchMaxWait = 500 * time.Millisecond
	idlePoll     = time.Second
	deferredPoll = 200 * time.Millisecond
)

// Abort backoff: the first retry of an aborted batch is immediate (most
// aborts are a rebalance), later ones wait abortBackoffBase doubled per
// consecutive abort, at most abortBackoffMax. A batch is never retried in a
// hot loop.
const (
	abortBackoffBase = 100 * time.Millisecond
	abortBackoffMax  = 5 * time.Second
)

// abortBackoff is the wait before retrying after n consecutive aborts.
func abortBackoff(n int) time.Duration {
	if n < 2 {
		return 0
	}
	d := abortBackoffBase
	for i := 2; i < n && d < abortBackoffMax; i++ {
		d *= 2
	}
	return min(d, abortBackoffMax)
}

// AbortObserver is an optional extension of Observer: an Observer that
// implements it is told each time the run loop backs off after consecutive
// aborted transactions.
type AbortObserver interface {
	AbortBackoff(consecutiveAborts int, wait time.Duration)
}

// afterBatch keeps the run of consecutive aborts and backs off.
func (p *Processor) afterBatch(ctx context.Context, committed bool) {
	if committed {
		if p.aborts > 0 {
			p.log.Info("transaction committed after aborts", "aborts", p.aborts)
		}
		p.aborts, p.lastAbort, p.abortReasons = 0, "", nil
		p.mu.Lock()
		p.stats.ConsecutiveAborts = 0
		p.mu.Unlock()
		return
	}
	p.aborts++
	wait := abortBackoff(p.aborts)
	if p.endFailed {
		// An End that failed is retried after a backoff at once.
		wait = max(wait, abortBackoffBase)
		p.endFailed = false
	}
	p.mu.Lock()
	p.stats.ConsecutiveAborts = int64(p.aborts)
	if wait > 0 {
		p.stats.Backoffs++
		p.stats.BackoffTime += wait
	}
	p.mu.Unlock()
	if wait == 0 {
		return
	}
	if o, ok := p.cfg.Observer.(AbortObserver); ok {
		o.AbortBackoff(p.aborts, wait)
	}
	p.log.Warn("transactions keep aborting; backing off", "consecutive_aborts", p.aborts, "wait", wait, "reason", p.lastAbort)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
