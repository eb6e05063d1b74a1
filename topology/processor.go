package topology

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/kcqrs/kcqrs/shred"

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
	// names are the served aggregate and command type names, shared by
	// every command that names them (parseCommandMetaNames).
	names map[string]string

	admCl *kgo.Client
	adm   *kadm.Client
	sess  *kgo.GroupTransactSession
	// small holds the header values of produced records (outbuf.go);
	// keyBuf builds snapshot keys for lookups (load.go). Run loop only.
	small  smallBytes
	keyBuf []byte
	// polledAt is when the run loop's last poll returned (stages.go).
	polledAt time.Time
	cache    *snapshots.Cache
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
	// deferred are owned partitions whose records came while their store
	// was not ready: paused and rewound, resumed once the store is caught
	// up (run loop only; restore.go).
	deferred map[int32]kgo.EpochOffset // partition -> where it was rewound to
	// aborts counts consecutive transactions that did not commit (run
	// loop only); it drives the backoff and the isolation of a suspect
	// record (run.go).
	aborts    int
	lastAbort string
	// abortReasons are the reasons of the current run of aborts (reset
	// by a commit): one seen again starts isolation (isolate.go).
	abortReasons map[string]bool
	isolate      *isolation
	// endFailed: the last End returned an error (not a fence); the retry
	// backs off (run loop only).
	endFailed bool
	// undecompressable are the command batches skipped unread (bomb.go)
	// whose dead-letter pointers are not committed yet (run loop only).
	undecompressable []*kgo.ErrDecompressTooLarge
	// delivered: when a poll last delivered records or an error of each
	// commands partition; stuckCheckedAt: the last check (stuckfetch.go).
	// Run loop only.
	delivered      map[int32]time.Time
	restarted      map[int32]stuckGap
	stuckCheckedAt time.Time

	// Guarded by mu: readiness and restore progress (progress.go).
	running  bool
	joined   bool
	active   map[int32]bool // partitions whose store the run loop holds
	progress map[int32]*PartitionState
	hanging  map[int32]*hangingTxn
	// unreadable: owned partitions held back by data this build cannot
	// read (unreadable.go); nil until the first.
	unreadable map[int32]*Unreadable

	tail *tailer // warms assigned partitions, tails standbys (standby.go)
	// apply writes committed batches to the stores (applier.go); one per
	// session, used by the run loop.
	apply        *applier
	applyBacklog atomic.Int64 // committed batches queued, not yet written

	schemaBook schemaBook // the schema topic as read (schematopic.go)
	// checkGen is the schema book generation the current check of an
	// unreadable partition learns from (resumeReady, unreadable.go).
	checkGen int64
}

// partState is the life cycle of an owned partition in the run loop (Kafka
// Streams' task states): its records are processed only while running.
type partState int

const (
	// restoring: the store is not caught up with the changelog for the
	// current assignment; the partition's records are deferred.
	restoring partState = iota
	// running: the store reflects every committed transaction of the
	// partition; records are processed.
	running
	// suspect: an End did not confirm its commit (the broker may have
	// committed), or a store write after a commit failed. The store and
	// the state cache may be behind Kafka: catch up before any use.
	suspect
	// revoked: the partition is no longer owned; its store goes back to
	// the tailer.
	revoked
)

func (s partState) String() string {
	switch s {
	case restoring:
		return "restoring"
	case running:
		return "running"
	case suspect:
		return "suspect"
	case revoked:
		return "revoked"
	}
	return "unknown"
}

// partitionState is what the run loop keeps for one owned partition.
type partitionState struct {
	p     int32
	store *snapshots.Store
	state partState
	gen   uint64 // assignment generation the state refers to
	// mustReach, when suspect, is the changelog offset the partition's
	// last stable offset must pass before a catch-up counts: one past the
	// last record the uncertain transaction wrote, so that its outcome
	// (commit or abort) is known when the store is read again.
	mustReach  int64
	pending    map[string]*aggState // batch-local: aggregates touched by the open transaction
	order      []*aggState          // pending, in first-touch order
	lastOffset int64                // changelog offset of this batch's last snapshot, -1 if none
	// stopAt, when >= 0, is the offset from which the partition's records
	// are left out of the open transaction (deferred for a rebuild).
	stopAt int64
	// rebuild are aggregates to rebuild from the events topic before the
	// partition resumes; rebuilt holds the results until loaded.
	rebuild []*needsRebuild
	rebuilt map[string]*aggState
	// overlay holds the committed snapshots whose store write is still
	// queued (applier.go); applyEpoch counts the store's catch-ups.
	overlay    map[string]overlayEntry
	applyEpoch uint64
}

// ready reports whether the partition's records may be processed in the
// assignment generation gen.
func (ps *partitionState) ready(gen uint64) bool {
	return ps.state == running && gen != 0 && ps.gen == gen
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
	// Edges of a command's outputs (output.go, replyroute.go), counted when
	// decided (a batch that aborts and comes again counts them again).
	RepliesDropped, BadReplyAddresses, OutputsTooLarge int64
	// Unconfirmed counts transactions that tried to commit and whose End
	// did not confirm it (aborted by a rebalance, or unknown). Every
	// transaction that did not commit makes its partitions suspect: they
	// are caught up from the changelog before their next use.
	Unconfirmed int64
	// SessionsRecreated counts transactional sessions replaced because the
	// producer could not begin again after an End error that was not a
	// fence (run.go).
	SessionsRecreated int64
	// ConsecutiveAborts is the current run of transactions that did not
	// commit; Backoffs counts the waits it caused and BackoffTime their
	// total (run.go).
	ConsecutiveAborts int64
	Backoffs          int64
	BackoffTime       time.Duration
	// Isolated counts records re-run alone after their batch aborted
	// twice for the same reason; IsolatedDeadLetters those that still
	// failed alone and were answered and dead-lettered in a transaction
	// of their own.
	Isolated            int64
	IsolatedDeadLetters int64
	// Deferred counts fetched record runs of partitions whose store was
	// not ready: rewound and paused until the store was caught up.
	Deferred int64
	// UnreadableDeferrals counts the times a partition was held back (or,
	// after a check, kept back) because it holds data this build cannot
	// read (unreadable.go); Processor.Unreadable lists them.
	UnreadableDeferrals int64
	// OwnershipCorrections counts partitions dropped because the group's
	// assignment no longer gives them to this worker although no revoke
	// callback said so (assign.go).
	OwnershipCorrections int64
}

// RestoreReport describes one catch-up of a partition's store from the
// changelog.
type RestoreReport struct {
	Partition int32
	From, To  int64     // changelog offsets read: [From, To)
	Records   int       // snapshot records applied
	Rebuilt   bool      // the store was ahead of the changelog and was wiped
	Start     time.Time // when the catch-up began (restores of partitions overlap)
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
	if cfg.Personal != nil && reg.shred == nil {
		// A copy: the caller's registry stays as it was, so another reader
		// in the process sharing it (the transfer saga) is not made to
		// open values with keys only this processor's partitions load.
		var err error
		if reg, err = reg.withPersonal(shred.NewKeyring()); err != nil {
			return nil, err
		}
	}
	p := &Processor{
		cfg:       cfg,
		reg:       reg,
		log:       cfg.Logger.With("instance", cfg.InstanceID),
		assigned:  map[int32]uint64{},
		parts:     map[int32]*partitionState{},
		deferred:  map[int32]kgo.EpochOffset{},
		delivered: map[int32]time.Time{},
		restarted: map[int32]stuckGap{},
		active:    map[int32]bool{},
		progress:  map[int32]*PartitionState{},
		hanging:   map[int32]*hangingTxn{},
		stats:     Stats{Replies: map[wire.Status]int64{}},
		states:    newStateCache(cfg.StateCacheEntries),
	}
	p.names = servedNames(reg)
	p.tail = newTailer(p)
	return p, nil
}

// servedNames is the set of aggregate and command type names reg serves.
func servedNames(reg *Registry) map[string]string {
	names := map[string]string{}
	for name, bt := range reg.types {
		names[name] = name
		for c := range bt.commands {
			names[c] = c
		}
	}
	return names
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
		kgo.ProducerBatchCompression(compressionCodecs[p.cfg.Compression]),
	}
	opts = append(opts, p.cfg.ClientOpts...)
	return append(opts, extra...)
}

func (p *Processor) leaveStatic() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.adm.LeaveGroup(ctx, kadm.LeaveGroup(p.cfg.Group).InstanceIDs(p.cfg.InstanceID)); err != nil {
		p.log.Warn("leaving the group", "err", err)
	}
}

func itoa(v int64) []byte { return []byte(strconv.FormatInt(v, 10)) }
