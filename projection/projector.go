package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/wire"
)

// AccountAggregate is the aggregate type the account read models fold.
// Events of other aggregate types are not theirs and are passed over.
const AccountAggregate = "account"

// Stats counts what the projector's handlers did since it started.
type Stats struct {
	// Events read from the events topic (including other aggregates').
	Events int64
	// Applied events changed an account entry.
	Applied int64
	// Stale events were at or below the held version (redeliveries).
	Stale int64
	// Gaps are version gaps detected (each one logged and dead-lettered).
	Gaps int64
	// DeadLetters written by any of the groups.
	DeadLetters int64
	// Merged updates of the owner and currency tables; StaleMerges were
	// redeliveries there.
	Merged, StaleMerges int64
	// Written are the accounts group's events (applied or stale) whose
	// records the broker acknowledged; Forwarded the records sent with them
	// to the intermediate topics (owner-index entries and currency counters,
	// the latter once per currency, partition and batch). The downstream
	// groups have merged everything sent when Merged+StaleMerges reaches
	// Forwarded.
	Written, Forwarded int64
}

type counters struct {
	events, applied, stale, gaps, deadLetters, merged, staleMerges atomic.Int64
	written, forwarded                                             atomic.Int64
}

// GroupStats counts what one group (one read model) did since the
// projector started.
type GroupStats struct {
	// Applied records changed the group's table entry (for the accounts
	// group: events folded, gaps included; downstream: merged updates).
	Applied int64
	// Stale records were at or below the version held (redeliveries).
	Stale int64
	// Gaps are version gaps detected (accounts group only).
	Gaps int64
	// DeadLetters written to the group's dead-letter topic.
	DeadLetters int64
}

type groupCounters struct{ applied, stale, gaps, deadLetters atomic.Int64 }

// Projector runs the read models of one version: three goka groups.
//
//	events --(accounts group: fold by aggregate version)--> accounts table
//	       \--> <accounts>-by-owner    --(owners group)--> owners table
//	       \--> <accounts>-by-currency --(totals group)--> totals table
//
// Each group has its own dead-letter topic (<group>-dlq).
type Projector struct {
	cfg    Config
	c      counters
	groups map[goka.Group]*groupCounters // fixed at New: read without a lock
	// The group names, computed once (Names formats them on every call).
	accountsGroup, ownersGroup, totalsGroup goka.Group

	// accStores are the accounts group's stores, scanned for the totals.
	accStores *storeSet
	// ownerStores are the owners group's stores, swept of erased
	// accounts' entries (personal.go; only with Config.Personal).
	ownerStores *storeSet
	// totalStores are the totals group's stores (failWatch.Value checks
	// a read there while a session ends, as the owners group's).
	totalStores *storeSet
	// accCounters are the accounts group's counters (groups holds them too).
	accCounters *groupCounters
	// waitingForReset is set while Run waits for a reset of its version.
	waitingForReset atomic.Bool

	// w batches the accounts group's writes (writer.go); set by Run.
	w *tableWriter
	// gates order the commits of the owners and totals groups (gate.go);
	// set by Run before the groups start.
	gates map[goka.Group]*commitGate

	mu    sync.Mutex
	procs []*goka.Processor
}

// New validates the config and returns a projector; Run starts it.
func New(cfg Config) (*Projector, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Projector{cfg: cfg, groups: map[goka.Group]*groupCounters{}, accStores: &storeSet{}, ownerStores: &storeSet{}, totalStores: &storeSet{}}
	p.accountsGroup, p.ownersGroup, p.totalsGroup = cfg.Names.AccountsGroup(), cfg.Names.OwnersGroup(), cfg.Names.TotalsGroup()
	for _, g := range cfg.Names.Groups() {
		p.groups[g] = &groupCounters{}
	}
	p.accCounters = p.groups[p.accountsGroup]
	return p, nil
}

// GroupStats returns the counters of each group, by group name.
func (p *Projector) GroupStats() map[string]GroupStats {
	out := map[string]GroupStats{}
	for g, c := range p.groups {
		out[string(g)] = GroupStats{Applied: c.applied.Load(), Stale: c.stale.Load(), Gaps: c.gaps.Load(), DeadLetters: c.deadLetters.Load()}
	}
	return out
}

// WaitingForReset reports whether Run is waiting for a reset of its version
// to end before it starts.
func (p *Projector) WaitingForReset() bool { return p.waitingForReset.Load() }

// Names returns the names of the projector's groups and topics.
func (p *Projector) Names() Names { return p.cfg.Names }

// Stats returns the counters.
func (p *Projector) Stats() Stats {
	return Stats{
		Events: p.c.events.Load(), Applied: p.c.applied.Load(), Stale: p.c.stale.Load(),
		Gaps: p.c.gaps.Load(), DeadLetters: p.c.deadLetters.Load(),
		Merged: p.c.merged.Load(), StaleMerges: p.c.staleMerges.Load(),
		Written: p.c.written.Load(), Forwarded: p.c.forwarded.Load(),
	}
}

// Run creates the topics it needs, runs the three groups and returns when
// ctx ends (nil) or one of them fails.
func (p *Projector) Run(ctx context.Context) error {
	stop := ctx // the caller's: its end is a requested stop
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Announced before anything is created, so that a reset either sees it
	// or makes it wait (see register).
	reg, err := register(ctx, p.cfg, KindProjector, p.waitingForReset.Store)
	if err != nil {
		return err
	}
	defer reg.wait()
	defer cancel()
	parts, err := EnsureTopics(ctx, p.cfg)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(p.cfg.kgoOpts(
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(0),
		kgo.MaxBufferedRecords(1<<20),
		// A batch's events wait for its records: never forever (a stopping
		// partition waits for them, and the writer outlives the groups).
		kgo.RecordDeliveryTimeout(30*time.Second),
	)...)
	if err != nil {
		return fmt.Errorf("projection: %w", err)
	}
	defer cl.Close()
	n := p.cfg.Names
	p.w = newTableWriter(cl, p.accStores, n, parts, &p.c.written, &p.c.forwarded)
	stopWriter, writerDone := make(chan struct{}), make(chan struct{})
	go func() { p.w.run(stopWriter); close(writerDone) }()
	// The writer outlives the groups: a stopping partition waits for the
	// deferred commits of its pending events.
	defer func() { close(stopWriter); <-writerDone }()
	if p.cfg.Personal != nil {
		sweepCtx, stopSweep := context.WithCancel(ctx)
		sweepDone := make(chan struct{})
		go func() { p.sweepErased(sweepCtx, cl); close(sweepDone) }()
		defer func() { stopSweep(); <-sweepDone }()
	}
	p.gates = map[goka.Group]*commitGate{p.ownersGroup: newCommitGate(parts), p.totalsGroup: newCommitGate(parts)}
	graphs := []*goka.GroupGraph{
		goka.DefineGroup(n.AccountsGroup(),
			goka.Input(goka.Stream(p.cfg.EventsTopic), rawCodec{}, p.guard(n.AccountsGroup(), p.onEvent)),
			goka.Persist(jsonCodec[Account]{}),
			goka.Output(DeadLetters(n.AccountsGroup()), rawCodec{}),
		),
		goka.DefineGroup(n.OwnersGroup(),
			goka.Input(n.ByOwnerTopic(), rawCodec{}, p.guard(n.OwnersGroup(), p.onOwner)),
			goka.Persist(jsonCodec[Account]{}),
			goka.Output(DeadLetters(n.OwnersGroup()), rawCodec{}),
		),
		goka.DefineGroup(n.TotalsGroup(),
			goka.Input(n.ByCurrencyTopic(), rawCodec{}, p.guard(n.TotalsGroup(), p.onTotal)),
			goka.Persist(jsonCodec[CurrencyTotal]{}),
			goka.Output(DeadLetters(n.TotalsGroup()), rawCodec{}),
		),
	}
	// goka checks each group's topics with a client of its own: the three
	// at once, not one after the other (a fresh version's start).
	procs := make([]*goka.Processor, len(graphs))
	newErrs := make([]error, len(graphs))
	var wg sync.WaitGroup
	for i, g := range graphs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			procs[i], newErrs[i] = goka.NewProcessor(p.cfg.Brokers, g, p.processorOptions(g.Group())...)
			if newErrs[i] != nil {
				newErrs[i] = fmt.Errorf("projection: group %s: %w", g.Group(), newErrs[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(newErrs...); err != nil {
		return err
	}
	p.mu.Lock()
	p.procs = procs
	p.mu.Unlock()

	errs := make(chan error, len(procs))
	for _, proc := range procs {
		go func() {
			err := proc.Run(ctx)
			if err != nil {
				err = fmt.Errorf("projection: group %s: %w", proc.Graph().Group(), err)
			}
			cancel()
			errs <- err
		}()
	}
	var all []error
	for range procs {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	if stop.Err() != nil && ctx.Err() != nil {
		// A stop requested while the groups were still starting: goka
		// answers it with "context closed while waiting for startup
		// tables", which is the stop itself, not a failure
		// (TestStartLogNamesTheServedVersions stopped that early).
		return nil
	}
	return errors.Join(all...)
}

// WaitReady waits until every group has recovered its table and runs.
func (p *Projector) WaitReady(ctx context.Context) error {
	for {
		p.mu.Lock()
		procs := p.procs
		p.mu.Unlock()
		if procs != nil {
			for _, proc := range procs {
				if err := proc.WaitForReadyContext(ctx); err != nil {
					return err
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *Projector) processorOptions(g goka.Group) []goka.ProcessorOption {
	c := p.cfg
	var stores *storeSet
	var extra []goka.ProcessorOption
	if g == c.Names.AccountsGroup() {
		// The counters of a partition are rebuilt from its store after
		// every rebalance: another member may have changed it meanwhile.
		stores = p.accStores
		extra = append(extra, goka.WithRebalanceCallback(func(goka.Assignment) {
			p.w.forget()
		}))
	}
	switch g {
	case c.Names.OwnersGroup():
		stores = p.ownerStores
	case c.Names.TotalsGroup():
		stores = p.totalStores
	}
	if gate := p.gates[g]; gate != nil {
		extra = append(extra, goka.WithProducerBuilder(gate.producerBuilder(goka.ProducerBuilderWithConfig(c.saramaConfig()))))
	}
	return append([]goka.ProcessorOption{
		goka.WithClientID(string(g)),
		goka.WithHasher(Murmur2),
		// A record without a value goes to the handler (and is
		// dead-lettered) like any other: goka's default (NilIgnore) commits
		// it at once, past the pending writes of the records before it
		// (TestCommitNeverOvertakesAWrite, a tombstone).
		goka.WithNilHandling(goka.NilProcess),
		goka.WithStorageBuilder(pebbleBuilder(filepath.Join(c.StateDir, "processor"), c.CacheBytes, stores)),
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(c.saramaConfig())),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(c.saramaConfig())),
		goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(c.saramaConfig())),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(c.saramaConfig(), c.topicManagerConfig())),
		goka.WithLogger(gokaLogger{c.Logger.With("group", string(g))}),
	}, extra...)
}

// handlerError is a failure of a handler: the record is dead-lettered with it.
type handlerError struct{ msg string }

func (e handlerError) Error() string { return e.msg }

// guard turns a handler's panic into a dead letter, so that one bad record
// cannot stop a group (goka would stop the processor). A failure the
// handler or goka itself reports with Context.Fail (a store that cannot be
// read or written, a key that does not come) is not the record's: goka's
// Fail panics to stop the partition without committing the record, and
// guard lets that panic through. Recovered, it dead-lettered the record
// and committed it without its write (TestAFailedFoldIsNeverCommitted).
func (p *Projector) guard(g goka.Group, fn func(goka.Context, []byte)) goka.ProcessCallback {
	var stores *storeSet // the group's stores, where goka's Value reads
	switch g {
	case p.ownersGroup:
		stores = p.ownerStores
	case p.totalsGroup:
		stores = p.totalStores
	}
	table := TableOf(g)
	return func(ctx goka.Context, msg any) {
		raw, _ := msg.([]byte)
		gate := p.gates[g] // nil for the accounts group: its writer orders its commits
		e := gate.begin(ctx)
		fc := &failWatch{gokaContext: ctx, gate: gate, e: e, stores: stores, table: table}
		defer func() {
			r := recover()
			if r != nil && fc.failed == nil {
				p.deadLetter(fc, g, raw, fmt.Sprintf("handler panic: %v", r))
			}
			gate.end(e, fc.failed)
			if r != nil && fc.failed != nil {
				panic(r)
			}
		}()
		fn(fc, raw)
	}
}

// failWatch is a goka context that notes a call of Fail.
type failWatch struct {
	gokaContext
	failed error
	// gate and e: the commit gate and the record's entry (nil without
	// one), told of each call that may emit (arm).
	gate *commitGate
	e    *gateEntry
	// stores and table: where Value reads (nil stores: not checked).
	stores *storeSet
	table  string
}

// gokaContext names the embedded context (a field named Context would hide
// the method).
type gokaContext = goka.Context

// Value, SetValue, Delete and Emit report their failures with the goka
// context's own Fail (a panic): watch notes it.
func (c *failWatch) Value() any {
	defer c.watch()
	v := c.gokaContext.Value()
	if v == nil && c.stores != nil && c.gokaContext.Context().Err() != nil {
		// While the session ends, goka's Fail returns instead of
		// panicking: a failed read answers nil, as a key without an entry
		// does, and the handler would merge the record onto nothing and
		// its commit be released (TestAFailedOwnersReadIsNeverCommitted).
		// The store tells them apart.
		if err := c.readable(); err != nil {
			c.failed = err
			panic(err)
		}
	}
	return v
}

// writes returns the record's store (nil if not watched) and its count of
// failed writes.
func (c *failWatch) writes() (*PebbleStorage, int64) {
	if c.stores == nil {
		return nil, 0
	}
	st := c.stores.get(c.table, c.Partition())
	if st == nil {
		return nil, 0
	}
	return st, st.writeErrs.Load()
}

// written stops the handler when goka's write to st failed while the
// session ends: goka's Fail returned then, nothing was emitted, and the
// gate would release the record's commit without its entry
// (TestAFailedOwnersWriteIsNeverCommitted).
func (c *failWatch) written(st *PebbleStorage, errs int64) {
	if st == nil || st.writeErrs.Load() == errs {
		return
	}
	err := fmt.Errorf("projection: write %s/%d failed", c.table, c.Partition())
	if c.failed == nil {
		c.failed = err
	}
	panic(err)
}

// readable reports why goka's Value could not have read the record's key:
// nil when the key has no entry in the store.
func (c *failWatch) readable() error {
	st := c.stores.get(c.table, c.Partition())
	if st == nil {
		return fmt.Errorf("projection: no store for %s/%d", c.table, c.Partition())
	}
	raw, err := st.Get(c.Key())
	if err != nil {
		return fmt.Errorf("projection: read %s/%d: %w", c.table, c.Partition(), err)
	}
	if raw != nil {
		return fmt.Errorf("projection: read %s/%d: an entry was read as none", c.table, c.Partition())
	}
	return nil
}

func (c *failWatch) SetValue(v any, opts ...goka.ContextOption) {
	defer c.watch()
	c.gate.arm(c.e, 1)
	defer c.gate.arm(c.e, -1)
	st, errs := c.writes()
	c.gokaContext.SetValue(v, opts...)
	c.written(st, errs)
}

func (c *failWatch) Delete(opts ...goka.ContextOption) {
	defer c.watch()
	c.gate.arm(c.e, 1)
	defer c.gate.arm(c.e, -1)
	st, errs := c.writes()
	c.gokaContext.Delete(opts...)
	c.written(st, errs)
}

func (c *failWatch) Emit(topic goka.Stream, key string, v any, opts ...goka.ContextOption) {
	defer c.watch()
	c.gate.arm(c.e, 1)
	defer c.gate.arm(c.e, -1)
	c.gokaContext.Emit(topic, key, v, opts...)
}

func (c *failWatch) watch() {
	if r := recover(); r != nil {
		if c.failed == nil {
			c.failed = fmt.Errorf("%v", r)
		}
		panic(r)
	}
}

func (c *failWatch) Fail(err error) {
	if err == nil {
		err = errors.New("projection: failed")
	}
	c.failed = err
	c.gokaContext.Fail(err)
}

func (p *Projector) deadLetter(ctx goka.Context, g goka.Group, raw []byte, reason string) {
	h := goka.Headers{}
	for k, v := range ctx.Headers() {
		h[k] = v
	}
	key, raw, reason, h := deadLetterParts(ctx.Key(), raw, reason, h)
	p.c.deadLetters.Add(1)
	p.groups[g].deadLetters.Add(1)
	p.cfg.Logger.Warn("dead letter", "group", g, "key", wire.Truncate(ctx.Key(), 256), "topic", ctx.Topic(),
		"partition", ctx.Partition(), "offset", ctx.Offset(), "error", reason)
	h[wire.HeaderDLQError] = []byte(reason)
	h[wire.HeaderDLQTopic] = []byte(ctx.Topic())
	h[wire.HeaderDLQPartition] = []byte(strconv.Itoa(int(ctx.Partition())))
	h[wire.HeaderDLQOffset] = []byte(strconv.FormatInt(ctx.Offset(), 10))
	if raw == nil {
		raw = []byte{}
	}
	if g == p.accountsGroup {
		// Through the writer, in order with the commits of the group: goka's
		// producer would send it up to 100 ms later, and the writer would
		// meanwhile release the commit of a later event, which covers this
		// one whether or not its dead letter is ever written.
		r := &kgo.Record{Topic: string(DeadLetters(g)), Partition: p.w.partitionOf(ctx.Key()),
			Key: []byte(key), Value: raw, Headers: make([]kgo.RecordHeader, 0, len(h))}
		for k, v := range h {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: v})
		}
		done := ctx.DeferCommit()
		if err := p.w.deadLetter(ctx.Partition(), r, done); err != nil {
			done(err) // fails the group: the event is not committed
		}
		return
	}
	// Under the record's own key, cut or not: the commit gate knows a
	// record's emits by its key (the owners and totals groups read records
	// the accounts group wrote, whose keys are within the limit).
	ctx.Emit(DeadLetters(g), ctx.Key(), raw, goka.WithCtxEmitHeaders(h))
}

// onEvent folds one event of the events topic. Every event's commit goes
// through the writer, in order: sarama commits the highest offset marked in
// a partition, so an event that writes nothing, committed at once, would
// also commit the events before it whose writes are still pending
// (TestCommitNeverOvertakesAWrite).
func (p *Projector) onEvent(ctx goka.Context, raw []byte) {
	if !p.fold(ctx, raw) {
		p.pass(ctx)
	}
}

// fold folds an event; false if it handed nothing to the writer.
func (p *Projector) fold(ctx goka.Context, raw []byte) bool {
	p.c.events.Add(1)
	g := p.accountsGroup
	env, ev, decErr := p.cfg.Registry.DecodeEvent(raw)
	if env.AggregateType == "" {
		p.deadLetter(ctx, g, raw, fmt.Sprintf("undecodable event: %v", decErr))
		return false
	}
	if env.AggregateType != AccountAggregate {
		return false
	}
	key := ctx.Key()
	if env.AggregateID != key {
		p.deadLetter(ctx, g, raw, fmt.Sprintf("event of aggregate %q under key %q", env.AggregateID, key))
		return false
	}
	if decErr != nil {
		ev = nil // folded as unhandled: its version is consumed, its effect is not
	}
	pw, err := p.w.part(ctx.Partition())
	if err != nil {
		ctx.Fail(err)
	}
	done := ctx.DeferCommit()
	if err := p.w.waitForSpace(); err != nil {
		done(err) // fails the group: the event is not committed
		return true
	}
	var (
		queued    bool
		cur, next Account
		outcome   Outcome
		ownerRec  *kgo.Record
		// totalsFailed: the event could not be folded for a reason that
		// is not its own (totals, owner key, store read).
		totalsFailed error
		oversized    string
	)
	func() {
		pw.mu.Lock()
		defer pw.mu.Unlock()
		defer func() {
			switch {
			case queued:
			case totalsFailed != nil:
				// Not the event's fault: its batch fails (and every later
				// one), so that neither it nor an event after it is
				// committed, also while the session ends (ctx.Fail below
				// does not stop the partition then).
				p.w.failLocked(pw, done, totalsFailed)
			default: // a panic (dead-lettered by guard): commit in order
				pw.pending.dones = append(pw.pending.dones, done)
				p.w.added()
			}
			queued = true
		}()
		var (
			ok bool
			ce *cachedEntry
		)
		if cur, ce, ok = pw.heldLocked(key); !ok && !pw.storeEmpty {
			// The store itself, not ctx.Value: goka's Value reports a failed
			// read with Fail, which does not stop the handler while the
			// session ends, and Value then returns nil, as for an account
			// without an entry (TestAFailedReadIsNeverFolded).
			if cur, ok, totalsFailed = p.w.readLocked(pw, key); totalsFailed != nil {
				return
			}
			if ok {
				ce = p.w.cacheLocked(pw, key, cur)
			}
		}
		next, outcome = FoldAccount(cur, env, ev)
		if outcome != Stale {
			if oversized = oversizedEntry(&next, next.Owner != cur.Owner); oversized != "" {
				return // written, it would fail the group on every retry (entrysize.go): the commit only
			}
		}
		var c *counterState
		if outcome == Stale {
			// The writer writes the local store, then the table topic and
			// the intermediate topics, with non-atomic produces: a failed
			// produce or a crash may have kept the store update and lost the
			// rest. The events since the last commit come again and are
			// stale here, so re-sending the held entry (table and
			// downstream) repairs exactly that; an entry at or below the
			// version held changes nothing anywhere.
			if cur.Version == 0 {
				return // nothing held: the commit only
			}
			if c, totalsFailed = p.w.currentTotalsLocked(pw, cur); totalsFailed != nil {
				return
			}
			if ownerRec, totalsFailed = p.ownerRecord(cur); totalsFailed != nil {
				return
			}
			p.w.addLocked(pw, key, ce, cur, false, ownerRec, c, ctx.Offset(), done)
			queued = true
			return
		}
		// Totals first: they may scan the store, which must not hold next yet.
		if c, totalsFailed = p.w.foldTotalsLocked(pw, cur, next); totalsFailed != nil {
			return
		}
		if next.Owner != cur.Owner {
			if ownerRec, totalsFailed = p.ownerRecord(next); totalsFailed != nil {
				return
			}
		}
		p.w.addLocked(pw, key, ce, next, true, ownerRec, c, ctx.Offset(), done)
		queued = true
	}()
	if totalsFailed != nil {
		ctx.Fail(totalsFailed) // stops the partition now (guard lets it through)
		return true
	}
	gc := p.accCounters
	switch outcome {
	case Stale:
		p.c.stale.Add(1)
		gc.stale.Add(1)
		return true
	case AppliedAfterGap:
		p.c.gaps.Add(1)
		gc.gaps.Add(1)
		p.deadLetter(ctx, g, raw, fmt.Sprintf("version gap: read model held version %d, event has version %d", cur.Version, env.Version))
		if ev == nil {
			p.deadLetter(ctx, g, raw, fmt.Sprintf("unhandled event %s: %v", env.EventType, decErr))
		}
	case Unhandled:
		reason := fmt.Sprintf("unknown event type %q", env.EventType)
		if decErr != nil {
			reason = fmt.Sprintf("unhandled event %s: %v", env.EventType, decErr)
		}
		p.deadLetter(ctx, g, raw, reason)
	}
	if oversized != "" {
		p.deadLetter(ctx, g, raw, "event not folded: "+oversized)
		return true // its commit is queued
	}
	p.c.applied.Add(1)
	gc.applied.Add(1)
	return true
}

// ownerRecord is a's owner-index record for the owners model, under its
// owner's blind name with Config.Personal (nil without an owner, or when
// its subject is erased). The owner index holds only id, owner and version: an account's
// owner never changes, so it is written once (and re-sent by the stale
// path, to repair), not on every event, and a listing reads the entries
// themselves from the accounts view.
func (p *Projector) ownerRecord(a Account) (*kgo.Record, error) {
	name, ok, err := p.ownerName(a) // the blind name with Config.Personal
	if err != nil || !ok {
		return nil, err // err fails the group: the keys are not being followed
	}
	k := OwnerKey(name, a.ID)
	v, err := encodeAccount(&Account{ID: a.ID, Owner: name, Version: a.Version})
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: p.w.byOwner, Partition: p.w.partitionOf(k), Key: []byte(k), Value: v}, nil
}

// pass hands the writer an event that writes nothing, for its commit only.
func (p *Projector) pass(ctx goka.Context) {
	done := ctx.DeferCommit()
	if err := p.w.pass(ctx.Partition(), done); err != nil {
		done(err)
	}
}

func decodeAccount(raw []byte) (Account, error) {
	var a Account
	if err := unmarshalAccount(raw, &a); err != nil {
		return a, fmt.Errorf("projection: codec: decode account: %w", err)
	}
	if a.ID == "" || a.Version <= 0 {
		return a, fmt.Errorf("projection: account entry without id or version")
	}
	return a, nil
}

func (p *Projector) onOwner(ctx goka.Context, raw []byte) {
	g := p.ownersGroup
	a, err := decodeAccount(raw)
	if err == nil && ctx.Key() != OwnerKey(a.Owner, a.ID) {
		err = fmt.Errorf("projection: entry of owner %q, account %q under key %q", a.Owner, a.ID, ctx.Key())
	}
	if err != nil {
		p.deadLetter(ctx, g, raw, err.Error())
		return
	}
	held, _ := ctx.Value().(*Account)
	if p.erasedEntry(a) {
		// The blind name must not outlive the subject's key: an entry of an
		// erased account is deleted (sent again by sweepErased) or, arriving
		// after the erasure, never stored.
		if held != nil {
			ctx.Delete()
		}
		p.c.merged.Add(1)
		p.groups[g].applied.Add(1)
		return
	}
	if !MergeOwner(held, a) {
		p.c.staleMerges.Add(1)
		p.groups[g].stale.Add(1)
		// goka wrote its store before the table emit: re-emit the held
		// entry in case that emit was lost (the store is ahead of the table).
		ctx.SetValue(held)
		return
	}
	p.c.merged.Add(1)
	p.groups[g].applied.Add(1)
	ctx.SetValue(&a)
}

func (p *Projector) onTotal(ctx goka.Context, raw []byte) {
	g := p.totalsGroup
	var upd CurrencyTotal
	err := json.Unmarshal(raw, &upd)
	if err == nil && (upd.Currency == "" || ctx.Key() != TotalKey(upd.Currency, upd.Partition)) {
		err = fmt.Errorf("projection: counters of currency %q, partition %d under key %q", upd.Currency, upd.Partition, ctx.Key())
	}
	if err != nil {
		p.deadLetter(ctx, g, raw, fmt.Sprintf("projection: totals update: %v", err))
		return
	}
	var held CurrencyTotal
	if v, ok := ctx.Value().(*CurrencyTotal); ok && v != nil {
		held = *v
	}
	if !MergeTotal(&held, upd) {
		p.c.staleMerges.Add(1)
		p.groups[g].stale.Add(1)
		ctx.SetValue(&held) // as in onOwner: repairs a lost table emit
		return
	}
	p.c.merged.Add(1)
	p.groups[g].applied.Add(1)
	ctx.SetValue(&held)
}

// EnsureTopics waits for the events topic (the processor creates it) and
// creates the version's intermediate, dead-letter and table topics with its
// partition count. It returns that count.
func EnsureTopics(ctx context.Context, cfg Config) (int32, error) {
	cfg.setDefaults()
	cl, err := kgo.NewClient(cfg.kgoOpts()...)
	if err != nil {
		return 0, fmt.Errorf("projection: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var parts int32
	for {
		td, err := adm.ListTopics(ctx, cfg.EventsTopic)
		if err == nil {
			if t, ok := td[cfg.EventsTopic]; ok && t.Err == nil && len(t.Partitions) > 0 {
				parts = int32(len(t.Partitions))
				break
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("projection: waiting for topic %s: %w", cfg.EventsTopic, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	n := cfg.Names
	keep := map[string]*string{"retention.ms": ptr("-1")}
	compact := map[string]*string{"cleanup.policy": ptr("compact")}
	kept := n.Intermediate()
	var tables []string
	for _, g := range n.Groups() {
		kept = append(kept, string(DeadLetters(g)))
		tables = append(tables, string(goka.GroupTable(g)))
	}
	// One request per configuration, not one per topic: a fresh version
	// creates eight topics before its groups start.
	for _, c := range []struct {
		conf   map[string]*string
		topics []string
	}{{keep, kept}, {compact, tables}} {
		resps, err := adm.CreateTopics(ctx, parts, int16(cfg.ReplicationFactor), c.conf, c.topics...)
		if err != nil {
			return 0, fmt.Errorf("projection: create topics %v: %w", c.topics, err)
		}
		for _, name := range c.topics {
			resp, ok := resps[name]
			if !ok {
				return 0, fmt.Errorf("projection: create topic %s: no answer", name)
			}
			if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
				return 0, fmt.Errorf("projection: create topic %s: %w", name, resp.Err)
			}
		}
	}
	return parts, nil
}

func ptr(s string) *string { return &s }
