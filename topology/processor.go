package topology

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/kcqrs/kcqrs/snapshots"
	"github.com/kcqrs/kcqrs/wire"
)

// Processor is one worker of the command-processing consumer group. It owns
// some partitions of the command topic and is the only writer of their
// aggregates' events and snapshots.
type Processor struct {
	cfg Config
	reg *Registry
	log *slog.Logger

	admCl *kgo.Client
	adm   *kadm.Client
	sess  *kgo.GroupTransactSession
	cache *snapshots.Cache
	// states holds decoded committed aggregates between transactions.
	states *stateCache

	partitions int32 // of the co-partitioned topics
	topics     *topicCache

	mu       sync.Mutex
	assigned map[int32]uint64 // partition -> assignment generation; absent when not owned
	gen      uint64
	restores []RestoreReport
	stats    Stats

	parts map[int32]*partitionState // used by the run loop only

	// Guarded by mu: readiness and restore progress (progress.go).
	running  bool
	joined   bool
	active   map[int32]bool // partitions whose store the run loop holds
	progress map[int32]*PartitionState
	hanging  map[int32]*hangingTxn

	tail *tailer // warms assigned partitions, tails standbys (standby.go)
}

// partitionState is what the run loop keeps for one owned partition.
type partitionState struct {
	p           int32
	store       *snapshots.Store
	restoredGen uint64               // assignment generation the store was caught up in
	pending     map[string]*aggState // batch-local: aggregates touched by the open transaction
	order       []*aggState          // pending, in first-touch order
	lastOffset  int64                // changelog offset of this batch's last snapshot, -1 if none
}

// Stats counts what a processor did. Replies are counted by status.
type Stats struct {
	Commands     int64
	Replies      map[wire.Status]int64
	Duplicates   int64
	Events       int64
	Snapshots    int64
	DeadLetters  int64
	Transactions int64
	Aborted      int64
	// StateRebuilds counts aggregates whose snapshot state was unreadable
	// with the current schemas and was rebuilt from the events topic.
	StateRebuilds int64
	// HangingTransactions counts input partitions found blocked by a
	// transaction open longer than Config.HangingTxnThreshold.
	HangingTransactions int64
}

// RestoreReport describes one catch-up of a partition's store from the
// changelog.
type RestoreReport struct {
	Partition int32
	From, To  int64 // changelog offsets read: [From, To)
	Records   int   // snapshot records applied
	Rebuilt   bool  // the store was ahead of the changelog and was wiped
	Duration  time.Duration
}

// New validates cfg and returns a processor; Run starts it.
func New(cfg Config, reg *Registry) (*Processor, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if reg == nil || len(reg.types) == 0 {
		return nil, errors.New("topology: no aggregate types registered")
	}
	if len(cfg.SchemaRegistryURLs) > 0 && reg.confluent == nil {
		cl, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(cfg.SchemaRegistryURLs...)}, cfg.SchemaRegistryOpts...)...)
		if err != nil {
			return nil, fmt.Errorf("topology: schema registry: %w", err)
		}
		if err := reg.UseSchemaRegistry(cl); err != nil {
			return nil, err
		}
	}
	p := &Processor{
		cfg:      cfg,
		reg:      reg,
		log:      cfg.Logger.With("instance", cfg.InstanceID),
		assigned: map[int32]uint64{},
		parts:    map[int32]*partitionState{},
		active:   map[int32]bool{},
		progress: map[int32]*PartitionState{},
		hanging:  map[int32]*hangingTxn{},
		stats:    Stats{Replies: map[wire.Status]int64{}},
		states:   newStateCache(cfg.StateCacheEntries),
	}
	p.tail = newTailer(p)
	return p, nil
}

// Stats returns a copy of the processor's counters.
func (p *Processor) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Replies = make(map[wire.Status]int64, len(p.stats.Replies))
	for k, v := range p.stats.Replies {
		s.Replies[k] = v
	}
	return s
}

// Restores returns every store catch-up this processor did, oldest first.
func (p *Processor) Restores() []RestoreReport {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]RestoreReport(nil), p.restores...)
}

// Assigned returns the command partitions this worker currently owns.
func (p *Processor) Assigned() []int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int32, 0, len(p.assigned))
	for part := range p.assigned {
		out = append(out, part)
	}
	return out
}

func (p *Processor) clientOpts(extra ...kgo.Opt) []kgo.Opt {
	// The fetch bounds come before ClientOpts, which may override them.
	opts := []kgo.Opt{
		kgo.SeedBrokers(p.cfg.Brokers...),
		kgo.FetchMaxBytes(int32(p.cfg.FetchMaxBytes)),
		kgo.FetchMaxPartitionBytes(int32(p.cfg.FetchMaxPartitionBytes)),
	}
	opts = append(opts, p.cfg.ClientOpts...)
	return append(opts, extra...)
}

// Run processes commands until ctx is canceled (then it ends the open
// transaction, leaves the group and closes its stores, returning nil) or a
// non-retryable error happens.
func (p *Processor) Run(ctx context.Context) (err error) {
	p.admCl, err = kgo.NewClient(p.clientOpts()...)
	if err != nil {
		return fmt.Errorf("topology: admin client: %w", err)
	}
	defer p.admCl.Close()
	p.adm = kadm.NewClient(p.admCl)
	p.partitions, err = p.cfg.prepareTopics(ctx, p.admCl)
	if err != nil {
		return err
	}
	p.topics = newTopicCache(p.admCl)

	p.cache = snapshots.NewCache(p.cfg.CacheBytes)
	defer p.cache.Unref()
	defer p.closeStores()

	var static []kgo.Opt
	if p.cfg.StaticMembership {
		static = append(static, kgo.InstanceID(p.cfg.InstanceID))
		// franz-go does not leave the group for a static member on Close;
		// a stopping worker leaves explicitly (after Close, deferred
		// first) so its partitions move at once.
		defer p.leaveStatic()
	}
	if p.cfg.GroupProtocol == GroupProtocolConsumer {
		// KIP-848: franz-go opts in with the server-side balancer (the
		// cooperative sticky balancer maps to the broker's "uniform").
		static = append(static, kgo.ServerSideBalancer())
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
		kgo.TransactionTimeout(p.cfg.TransactionTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.OnPartitionsAssigned(p.onAssigned),
		kgo.OnPartitionsRevoked(p.onRevoked),
		kgo.OnPartitionsLost(p.onRevoked),
	)...), p.cfg.SessionClientOpts...)...)
	if err != nil {
		return fmt.Errorf("topology: transact session: %w", err)
	}
	defer p.sess.Close() // leaves the group
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
	bg.Add(2)
	go func() { defer bg.Done(); p.tail.run(bgCtx) }()
	go func() { defer bg.Done(); p.watchHanging(bgCtx) }()
	p.mu.Lock()
	p.running = true
	p.mu.Unlock()

	for {
		p.closeRevoked()
		fetches := p.sess.PollRecords(ctx, p.cfg.MaxBatch)
		if ctx.Err() != nil {
			return nil
		}
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
		})
		if fetches.NumRecords() == 0 {
			continue
		}
		if err := p.runBatch(ctx, fetches); err != nil {
			return err
		}
	}
}

func (p *Processor) leaveStatic() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.adm.LeaveGroup(ctx, kadm.LeaveGroup(p.cfg.Group).InstanceIDs(p.cfg.InstanceID)); err != nil {
		p.log.Warn("leaving the group", "err", err)
	}
}

// runBatch runs one transaction: the records polled so far, plus whatever is
// already buffered, up to MaxBatch records and CommitInterval.
func (p *Processor) runBatch(ctx context.Context, first kgo.Fetches) error {
	if err := p.sess.Begin(); err != nil {
		return fmt.Errorf("topology: begin transaction: %w", err)
	}
	b := &batch{}
	deadline := time.Now().Add(p.cfg.CommitInterval)
	n := p.processFetches(ctx, b, first)
	for n < p.cfg.MaxBatch && p.sess.Client().BufferedFetchRecords() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		pctx, cancel := context.WithDeadline(ctx, deadline)
		more := p.sess.PollRecords(pctx, p.cfg.MaxBatch-n)
		cancel()
		n += p.processFetches(ctx, b, more)
	}
	p.flushSnapshots(b)
	if h := p.cfg.hooks; h != nil && h.beforeEnd != nil {
		h.beforeEnd(b.partitions)
	}

	// End even when ctx is canceled, so a shutdown commits (or aborts) what
	// it did instead of leaving a transaction open until it times out.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.TransactionTimeout)
	defer cancel()
	// Flush before deciding: a produce that fails during End's own flush
	// would otherwise go unnoticed, and franz-go can commit a transaction
	// in which a record failed (measured with a kfake Produce fault: the
	// reply, snapshot and offset committed without the command's event).
	if err := p.sess.Client().Flush(endCtx); err != nil {
		b.fail(fmt.Errorf("flush: %w", err))
	}
	try := kgo.TryCommit
	if b.failed() != nil {
		try = kgo.TryAbort
		p.log.Error("aborting transaction: a record failed", "err", b.failed())
	}
	endStart := time.Now()
	committed, err := p.sess.End(endCtx, try)
	defer p.afterEndHook(b, &committed)
	if committed && b.failed() != nil {
		// franz-go refuses to commit a transaction in which a record failed,
		// so this should not happen. If it does, Kafka holds the truth: never
		// apply a batch known to be incomplete, catch the stores up instead.
		p.log.Error("transaction committed although a record failed; re-reading the changelog", "err", b.failed())
		for _, ps := range p.parts {
			ps.restoredGen = 0
		}
		committed = false
	}
	p.cfg.Observer.TransactionEnded(n, committed, time.Since(endStart))
	p.mu.Lock()
	p.stats.Transactions++
	if !committed {
		p.stats.Aborted++
	}
	p.mu.Unlock()
	if !committed {
		p.discard()
		if err != nil {
			return fmt.Errorf("topology: end transaction: %w", err)
		}
		p.log.Info("transaction aborted; the batch will be consumed again", "records", n, "partitions", b.partitions)
		return nil
	}
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
		return fmt.Errorf("topology: end transaction: %w", err)
	}
	return nil
}

func (p *Processor) afterEndHook(b *batch, committed *bool) {
	h := p.cfg.hooks
	if h == nil || h.afterEnd == nil {
		return
	}
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

func (p *Processor) produce(b *batch, r *kgo.Record, done func(*kgo.Record)) {
	p.sess.Produce(context.Background(), r, func(r *kgo.Record, err error) {
		if err != nil {
			b.fail(fmt.Errorf("produce to %s[%d]: %w", r.Topic, r.Partition, err))
			return
		}
		if done != nil {
			done(r)
		}
	})
}

func (p *Processor) processFetches(ctx context.Context, b *batch, fetches kgo.Fetches) int {
	n := 0
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		p.cfg.Observer.Fetched(fp.Partition, fp.Records[len(fp.Records)-1].Offset+1, fp.LastStableOffset)
		b.partitions = append(b.partitions, fp.Partition)
		ps, err := p.partition(ctx, fp.Partition)
		if err != nil {
			// The store cannot be opened or restored: processing without it
			// would break every guarantee. Fail the batch; it comes again.
			b.fail(fmt.Errorf("partition %d: %w", fp.Partition, err))
			p.log.Error("store unavailable", "partition", fp.Partition, "err", err)
			n += len(fp.Records)
			return
		}
		for _, r := range fp.Records {
			p.handle(b, ps, r)
			n++
		}
	})
	return n
}

// flushSnapshots produces one snapshot per aggregate touched in the batch.
func (p *Processor) flushSnapshots(b *batch) {
	for _, ps := range p.parts {
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
			ps := ps
			p.produce(b, &kgo.Record{
				Topic:     p.cfg.Topics.Changelog,
				Partition: ps.p,
				Key:       []byte(a.key),
				Value:     enc,
			}, func(r *kgo.Record) {
				p.mu.Lock()
				if r.Offset > ps.lastOffset {
					ps.lastOffset = r.Offset
				}
				p.mu.Unlock()
			})
		}
	}
}

// discard forgets the batch-local state of an aborted transaction.
func (p *Processor) discard() {
	for _, ps := range p.parts {
		ps.pending, ps.order, ps.lastOffset = nil, nil, -1
	}
}

// applyCommitted writes the committed batch's snapshots and changelog offset
// to each partition's store, one atomic Pebble batch per partition. Only now:
// the store is never ahead of the changelog.
func (p *Processor) applyCommitted() {
	for _, ps := range p.parts {
		p.mu.Lock()
		last := ps.lastOffset
		p.mu.Unlock()
		if len(ps.order) == 0 || last < 0 {
			p.cacheCommitted(ps)
			ps.pending, ps.order, ps.lastOffset = nil, nil, -1
			continue
		}
		wb := ps.store.NewBatch()
		for _, a := range ps.order {
			if a.dirty && a.encoded != nil {
				wb.Put([]byte(a.key), a.encoded)
			}
		}
		wb.SetCheckpoint(last + 1)
		if err := ps.store.Apply(wb); err != nil {
			// The store is now behind the changelog, which is safe: the
			// next use catches it up from its checkpoint.
			p.log.Error("store write failed; will catch up from the changelog", "partition", ps.p, "err", err)
			ps.restoredGen = 0
		} else {
			p.cacheCommitted(ps)
		}
		ps.pending, ps.order, ps.lastOffset = nil, nil, -1
	}
}

func (p *Processor) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, part := range assigned[p.cfg.Topics.Commands] {
		p.gen++
		p.assigned[part] = p.gen
		p.progress[part] = &PartitionState{Partition: part, Role: RoleActive}
	}
	p.joined = true
	p.log.Info("partitions assigned", "partitions", assigned[p.cfg.Topics.Commands])
	p.tail.wake()
}

func (p *Processor) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, part := range revoked[p.cfg.Topics.Commands] {
		delete(p.assigned, part)
		if ps := p.progress[part]; ps != nil && ps.Role == RoleActive {
			delete(p.progress, part)
		}
	}
	p.log.Info("partitions revoked", "partitions", revoked[p.cfg.Topics.Commands])
}

// closeRevoked hands the stores of partitions this worker no longer owns to
// the changelog tailer, which keeps tailing those it is a standby for and
// closes the others. They stay on disk: if the partition comes back, only
// the tail is read.
func (p *Processor) closeRevoked() {
	p.mu.Lock()
	var gone []*partitionState
	for part, ps := range p.parts {
		if _, ok := p.assigned[part]; !ok {
			gone = append(gone, ps)
			delete(p.parts, part)
			delete(p.active, part)
		}
	}
	p.mu.Unlock()
	for _, ps := range gone {
		p.states.dropPartition(ps.p)
		p.tail.give(ps.p, ps.store)
	}
}

func (p *Processor) closeStores() {
	for part, ps := range p.parts {
		p.states.dropPartition(part)
		if err := ps.store.Close(); err != nil {
			p.log.Warn("closing store", "partition", part, "err", err)
		}
		delete(p.parts, part)
	}
	p.mu.Lock()
	clear(p.active)
	p.mu.Unlock()
}

// partition returns the state of an owned partition, opening its store and
// catching it up with the changelog when this is the first use in the
// current assignment. Records of a partition are only polled after the
// group's stable offsets are known, so every transaction of an earlier owner
// has ended by now and the changelog's committed end is final for it.
func (p *Processor) partition(ctx context.Context, part int32) (*partitionState, error) {
	p.mu.Lock()
	gen := p.assigned[part]
	p.mu.Unlock()
	ps := p.parts[part]
	if ps == nil {
		// Mark the partition active before asking the tailer, so the
		// tailer does not open it meanwhile.
		p.mu.Lock()
		p.active[part] = true
		p.mu.Unlock()
		store := p.tail.take(part)
		if store == nil {
			var err error
			store, err = p.openStore(part)
			if err != nil {
				p.mu.Lock()
				delete(p.active, part)
				p.mu.Unlock()
				return nil, err
			}
		}
		ps = &partitionState{p: part, store: store, lastOffset: -1}
		p.parts[part] = ps
	}
	if gen == 0 || ps.restoredGen != gen {
		p.states.dropPartition(part)
		rep, err := p.restore(ctx, ps.p, ps.store, true)
		if err != nil {
			return nil, err
		}
		p.markActive(part, gen, rep.To)
		ps.restoredGen = gen
		if gen == 0 {
			// Records of a partition revoked under us: the transaction will
			// abort; force a catch-up next time.
			ps.restoredGen = 0
		}
		p.log.Info("store caught up", "partition", part, "from", rep.From, "to", rep.To, "records", rep.Records, "rebuilt", rep.Rebuilt, "took", rep.Duration)
	}
	return ps, nil
}

func (p *Processor) openStore(part int32) (*snapshots.Store, error) {
	dir := snapshots.PartitionDir(p.cfg.StateDir, p.cfg.Topics.Changelog, part)
	return snapshots.Open(dir, snapshots.Options{Cache: p.cache})
}

// restore reads the partition's changelog from the store's checkpoint to the
// changelog's committed end. report adds it to Restores (catch-ups of owned
// partitions; standby tailing is not a restore).
func (p *Processor) restore(ctx context.Context, part int32, store *snapshots.Store, report bool) (RestoreReport, error) {
	ps := struct {
		p     int32
		store *snapshots.Store
	}{part, store}
	start := time.Now()
	rep := RestoreReport{Partition: ps.p}
	topic := p.cfg.Topics.Changelog
	// The three lookups are independent: one round trip instead of three.
	var (
		wg                   sync.WaitGroup
		starts, ends, stable kadm.ListedOffsets
		serr, eerr, lerr     error
	)
	wg.Add(3)
	go func() { defer wg.Done(); starts, serr = p.adm.ListStartOffsets(ctx, topic) }()
	go func() { defer wg.Done(); ends, eerr = p.adm.ListEndOffsets(ctx, topic) }()
	go func() { defer wg.Done(); stable, lerr = p.adm.ListCommittedOffsets(ctx, topic) }()
	wg.Wait()
	if serr != nil {
		return rep, fmt.Errorf("changelog start offsets: %w", serr)
	}
	if eerr != nil {
		return rep, fmt.Errorf("changelog end offsets: %w", eerr)
	}
	if lerr != nil {
		return rep, fmt.Errorf("changelog stable offsets: %w", lerr)
	}
	so, ok1 := starts.Lookup(topic, ps.p)
	eo, ok2 := ends.Lookup(topic, ps.p)
	lso, ok3 := stable.Lookup(topic, ps.p)
	if !ok1 || !ok2 || !ok3 || so.Err != nil || eo.Err != nil || lso.Err != nil {
		return rep, fmt.Errorf("changelog partition %d offsets unavailable: %v %v %v", ps.p, so.Err, eo.Err, lso.Err)
	}
	from, has, err := ps.store.Checkpoint()
	if err != nil {
		return rep, err
	}
	if has && from > eo.Offset {
		// The store claims records the changelog does not have: the topic
		// was recreated (or truncated). Rebuild from scratch.
		p.log.Warn("store is ahead of the changelog; rebuilding", "partition", ps.p, "checkpoint", from, "end", eo.Offset)
		if err := ps.store.Wipe(); err != nil {
			return rep, err
		}
		rep.Rebuilt, has = true, false
	}
	if !has || from < so.Offset {
		from = so.Offset
	}
	target := lso.Offset
	rep.From, rep.To = from, target
	p.cfg.Observer.RestoreProgress(ps.p, from, target)
	if from < target {
		rep.Records, err = p.readChangelog(ctx, ps.p, ps.store, from, target)
		if err != nil {
			return rep, err
		}
	}
	rep.Duration = time.Since(start)
	if report {
		p.mu.Lock()
		p.restores = append(p.restores, rep)
		p.mu.Unlock()
	}
	return rep, nil
}

// readChangelog applies changelog records [from, target) to the store. Control
// records are kept so the read can end exactly at target even when the last
// records before it are transaction markers.
func (p *Processor) readChangelog(ctx context.Context, part int32, store *snapshots.Store, from, target int64) (int, error) {
	topic := p.cfg.Topics.Changelog
	prog := p.startProgress(part, from, target)
	cl, err := kgo.NewClient(p.clientOpts(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {part: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	records := 0
	next := from
	// One batch for the whole read: Reset keeps its buffer, so it stops
	// growing (and copying itself) after the first fetches.
	wb := store.NewBatch()
	for next < target {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return records, err
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return records, fmt.Errorf("reading changelog: %w", ferr)
		}
		wb.Reset()
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset >= target {
				return
			}
			next = r.Offset + 1
			if r.Attrs.IsControl() {
				return
			}
			if r.Value == nil {
				wb.Delete(r.Key)
			} else {
				wb.Put(r.Key, r.Value)
			}
			records++
		})
		wb.SetCheckpoint(next)
		if err := store.Apply(wb); err != nil {
			return records, err
		}
		p.cfg.Observer.RestoreProgress(part, next, target)
		prog.update(next, records)
	}
	prog.done(records)
	return records, nil
}

// load returns the aggregate's state: from this batch, else from the store,
// else the initial state.
func (p *Processor) load(ps *partitionState, bt *boundType, id string) (*aggState, error) {
	key := snapshotKey(bt.handler.AggregateType(), id)
	if a := ps.pending[key]; a != nil {
		return a, nil
	}
	a := p.states.take(ps.p, key) // committed state kept from an earlier batch
	if a == nil {
		val, ok, err := ps.store.Get([]byte(key))
		if err != nil {
			return nil, err
		}
		if ok {
			a, err = p.reg.decodeSnapshot(key, val)
			var se *StateSchemaError
			if errors.As(err, &se) {
				a, err = p.rebuildState(ps, bt, se)
			}
			if err != nil {
				return nil, err
			}
			if a.bt != bt {
				return nil, fmt.Errorf("snapshot %q belongs to aggregate type %q", key, a.bt.handler.AggregateType())
			}
		} else {
			a = &aggState{key: key, id: id, bt: bt, state: bt.handler.InitialState()}
		}
	}
	if ps.pending == nil {
		ps.pending = map[string]*aggState{}
	}
	ps.pending[key] = a
	ps.order = append(ps.order, a)
	return a, nil
}

// rebuildState replays one aggregate's events from partition ps.p of the
// events topic when its snapshot's state cannot be read with the current
// schemas (a state schema change without history or upcaster). It reads the
// whole partition up to its last stable offset, so it is slow, but it runs
// once per such aggregate: the rebuilt state is marked dirty and written back
// as a current-schema snapshot with the batch. A replay that does not end at
// the snapshot's version is an error: acting on a state that differs from
// the events would be worse than failing the batch.
func (p *Processor) rebuildState(ps *partitionState, bt *boundType, se *StateSchemaError) (*aggState, error) {
	p.log.Warn("snapshot state unreadable; rebuilding it from the events topic", "key", se.Key, "version", se.Version, "err", se.Err)
	ctx, cancel := context.WithTimeout(context.Background(), rebuildTimeout)
	defer cancel()
	topic := p.cfg.Topics.Events
	starts, err := p.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("%w; rebuild: events start offsets: %v", se, err)
	}
	stable, err := p.adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("%w; rebuild: events stable offsets: %v", se, err)
	}
	so, ok1 := starts.Lookup(topic, ps.p)
	lso, ok2 := stable.Lookup(topic, ps.p)
	if !ok1 || !ok2 || so.Err != nil || lso.Err != nil {
		return nil, fmt.Errorf("%w; rebuild: events partition %d offsets unavailable", se, ps.p)
	}
	var values [][]byte
	if so.Offset < lso.Offset {
		cl, err := kgo.NewClient(p.clientOpts(
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {ps.p: kgo.NewOffset().At(so.Offset)}}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.KeepControlRecords(),
		)...)
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		for next := so.Offset; next < lso.Offset; {
			fetches := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("%w; rebuild: %v", se, err)
			}
			var ferr error
			fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
			if ferr != nil {
				return nil, fmt.Errorf("%w; rebuild: reading events: %v", se, ferr)
			}
			fetches.EachRecord(func(r *kgo.Record) {
				if r.Offset >= lso.Offset {
					return
				}
				next = r.Offset + 1
				if r.Attrs.IsControl() || string(r.Key) != se.AggregateID {
					return
				}
				var env wire.Event
				value, err := p.reg.unframe(r.Value)
				if err == nil {
					err = p.reg.event.Decode(value, &env)
				}
				if err == nil && env.AggregateType == se.AggregateType && env.AggregateID == se.AggregateID {
					values = append(values, r.Value)
				}
			})
		}
	}
	state, version, err := p.reg.ReplayState(se.AggregateType, se.AggregateID, values)
	if err != nil {
		return nil, fmt.Errorf("%w; rebuild: %v", se, err)
	}
	if version != se.Version {
		return nil, fmt.Errorf("%w; rebuild: the events topic has the aggregate at version %d", se, version)
	}
	p.log.Info("snapshot state rebuilt from events", "key", se.Key, "version", version, "events", len(values))
	p.mu.Lock()
	p.stats.StateRebuilds++
	p.mu.Unlock()
	return &aggState{key: se.Key, id: se.AggregateID, bt: bt, version: version, state: state, recent: se.recent, dirty: true}, nil
}

// rebuildTimeout bounds one aggregate's rebuild from the events topic.
const rebuildTimeout = 5 * time.Minute

func itoa(v int64) []byte { return []byte(strconv.FormatInt(v, 10)) }
