package saga

import (
	"context"

	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
)

// Config configures a Saga. New applies the defaults and validates it.
type Config struct {
	// Brokers are the seed brokers. Required.
	Brokers []string
	// Events is the processor's events topic. Default "events".
	Events string
	// Commands is the processor's command topic. Default "commands".
	Commands string
	// Group is the saga's consumer group. Default "kcqrs-transfers".
	Group string
	// StateTopic is a compacted topic that records, per group, that the
	// group has started once: a group without committed offsets that has
	// started before lost them, and the saga refuses to replay silently
	// (ErrOffsetsLost). Created when missing. Default
	// "kcqrs-transfers-state".
	StateTopic string
	// InstanceID identifies this saga worker, stable across restarts (the
	// transactional id is Group + "-" + InstanceID). Required.
	InstanceID string
	// RedriveAfter is how long a transfer may stay pending (debited, not
	// completed or refunded) before the saga sends the leg it waits for
	// again (its credit, or once the target decided, its completion or
	// refund), with the same command id (deduplicated, or refused without
	// effect, if it arrived), and again after each further RedriveAfter.
	// Default 1m.
	RedriveAfter time.Duration
	// TransactionTimeout is the broker-side timeout of an open transaction.
	// Default: the processor's (topology.Config.TransactionTimeout, 8.5s).
	TransactionTimeout time.Duration
	// SessionTimeout is the saga group's session timeout: how long a saga
	// worker that died keeps its partitions (and its transfers wait). It
	// must stay below TransactionTimeout, for the reason given at
	// topology.Config.SessionTimeout: a commit is held while a rebalance
	// waits for a dead member. Default 8s (franz-go's own: 45s).
	SessionTimeout time.Duration
	// RebalanceTimeout bounds how long a rebalance waits for every member
	// to rejoin; a stopping worker may wait that long to leave. Default 30s
	// (franz-go's own: 60s).
	RebalanceTimeout time.Duration
	// MaxBatch bounds the records consumed in one transaction. Default 500.
	MaxBatch int
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
	// ClientOpts are extra franz-go options (TLS, SASL, ...).
	ClientOpts []kgo.Opt
	// SigningKey signs every leg the saga sends (kcqrs_signature,
	// topology.SignCommand): the processors refuse a leg without a valid
	// signature (topology.Config.InternalCommands, InternalCommands), so a
	// client cannot credit an account by writing a leg itself. The same
	// secret as the processors' CommandSigningKey. Required.
	SigningKey []byte
}

// RetiredReplyTopic is the reply topic earlier versions named on the legs
// ("transfer-replies"). The legs name none now: the processor answers them
// on its default reply topic, and a reply topic that a saga once owned is
// internal (topology.Config.InternalTopics), so a command naming it is
// refused (INVALID bad_reply_address) and nothing can be written where an
// older saga or an audit could take it for the answer to a leg.
const RetiredReplyTopic = "transfer-replies"

// InternalCommands are the saga's legs, which only it may send: the value
// of topology.Config.InternalCommands of the processors it drives.
func InternalCommands() map[string][]string {
	return map[string][]string{account.Name: {
		account.CreditForTransfer{}.CommandType(), account.CompleteTransfer{}.CommandType(), account.RefundTransfer{}.CommandType(),
	}}
}

// Defaults of Config.
const (
	DefaultRedriveAfter = time.Minute
	DefaultStateTopic   = "kcqrs-transfers-state"
)

func (c *Config) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Events, "events")
	def(&c.Commands, "commands")
	def(&c.Group, "kcqrs-transfers")
	def(&c.StateTopic, DefaultStateTopic)
	// The processor's defaults, for the same reasons (see topology.Config).
	d := topology.Defaults()
	if c.TransactionTimeout == 0 {
		c.TransactionTimeout = d.TransactionTimeout
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = d.SessionTimeout
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = d.RebalanceTimeout
	}
	if c.RedriveAfter == 0 {
		c.RedriveAfter = DefaultRedriveAfter
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 500
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem of the (defaulted) config at once.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers"))
	}
	if c.InstanceID == "" {
		errs = append(errs, errors.New("no instance id"))
	}
	if c.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("max batch %d < 1", c.MaxBatch))
	}
	if len(c.SigningKey) == 0 {
		errs = append(errs, errors.New("no signing key (the processors refuse unsigned transfer legs)"))
	}
	if c.TransactionTimeout < time.Second {
		errs = append(errs, fmt.Errorf("transaction timeout %v < 1s", c.TransactionTimeout))
	}
	if c.SessionTimeout >= c.TransactionTimeout {
		errs = append(errs, fmt.Errorf("session timeout %v must be below the transaction timeout %v", c.SessionTimeout, c.TransactionTimeout))
	}
	if c.RebalanceTimeout < time.Second {
		errs = append(errs, fmt.Errorf("rebalance timeout %v < 1s", c.RebalanceTimeout))
	}
	if c.RedriveAfter < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("redrive after %v < 100ms", c.RedriveAfter))
	}
	topics := map[string]bool{}
	for _, tp := range []string{c.Events, c.Commands, c.StateTopic} {
		topics[tp] = true
	}
	if len(topics) != 3 {
		errs = append(errs, fmt.Errorf("topics must differ: events %q, commands %q, state %q", c.Events, c.Commands, c.StateTopic))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("saga: invalid config: %w", errors.Join(errs...))
}

// Stats counts what a saga did, in committed transactions only, and what
// it is waiting for.
type Stats struct {
	// Debits is the number of TransferDebited events seen (each answered by
	// one CreditForTransfer).
	Debits int64
	// Completed and Refunded count CompleteTransfer and RefundTransfer
	// commands sent (one per TransferCredited or TransferCreditRefused
	// event seen).
	Completed, Refunded int64
	// Redriven counts legs (credit, completion or refund) sent again for
	// transfers pending longer than RedriveAfter.
	Redriven int64
	// DecodeErrors counts transfer events the saga could not decode; each
	// stopped its partition (logged as an error) until a retry decoded it.
	DecodeErrors int64
	// Stalled is the number of partitions stopped now at an event the saga
	// cannot decode.
	Stalled int
	// Pending is the number of transfers debited on this worker's
	// partitions and not ended yet; OldestPending the age of the oldest
	// (since its debit).
	Pending       int
	OldestPending time.Duration
	Transactions  int64
	Aborted       int64
	// SessionsRecreated counts transactional sessions replaced because the
	// producer could not begin again after an End that failed without a
	// fence (INVALID_TXN_STATE, say).
	SessionsRecreated int64
}

// Saga is one worker of the transfer process manager.
type Saga struct {
	cfg   Config
	reg   *topology.Registry
	log   *slog.Logger
	codec map[string]*schemas.Codec
	now   func() time.Time

	mu       sync.Mutex
	stats    Stats
	pending  map[pendingKey]*pendingTransfer
	stalled  map[int32]*stall
	rebuilds map[int32]*rebuilding
	// decided holds decisions seen while partitions are read back, for
	// transfers not tracked yet (see decide); emptied when no rebuild runs.
	decided map[pendingKey]step
	// endFailed is set by runBatch when End failed without a fence: the
	// run loop backs off before the next batch. Run loop only.
	endFailed bool
}

// New validates cfg and returns a saga; Run starts it. reg must serve the
// account aggregate (it decodes events).
func New(cfg Config, reg *topology.Registry) (*Saga, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if reg == nil {
		return nil, errors.New("saga: no registry")
	}
	set, err := schemas.LoadAccount()
	if err != nil {
		return nil, fmt.Errorf("saga: %w", err)
	}
	s := &Saga{
		cfg: cfg, reg: reg, log: cfg.Logger.With("saga", cfg.InstanceID), codec: map[string]*schemas.Codec{}, now: time.Now,
		pending: map[pendingKey]*pendingTransfer{}, stalled: map[int32]*stall{}, rebuilds: map[int32]*rebuilding{}, decided: map[pendingKey]step{},
	}
	for _, c := range []aggregates.Command{account.CreditForTransfer{}, account.CompleteTransfer{}, account.RefundTransfer{}} {
		codec, err := set.Codec(c.CommandType())
		if err != nil {
			return nil, fmt.Errorf("saga: %w", err)
		}
		s.codec[c.CommandType()] = codec
	}
	return s, nil
}

// Stats returns a copy of the saga's counters.
func (s *Saga) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Pending, st.OldestPending = len(s.pending), 0
	now := s.now()
	for _, p := range s.pending {
		st.OldestPending = max(st.OldestPending, now.Sub(p.since))
	}
	st.Stalled = len(s.stalled)
	return st
}

// Permissions are the ACLs the saga needs.
func (s *Saga) Permissions() []topology.Permission {
	c := s.cfg
	return topology.SagaPermissions(topology.SagaNames{Events: c.Events, Commands: c.Commands, State: c.StateTopic, Group: c.Group, InstanceID: c.InstanceID})
}

// Run processes events until ctx is canceled (then it returns nil) or a
// non-retryable error happens: among them ErrOffsetsLost, when the group
// has no committed offsets although it ran before.
func (s *Saga) Run(ctx context.Context) error {
	base := append([]kgo.Opt{kgo.SeedBrokers(s.cfg.Brokers...)}, s.cfg.ClientOpts...)
	admCl, err := kgo.NewClient(base...)
	if err != nil {
		return fmt.Errorf("saga: admin client: %w", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	commandPartitions, err := s.ensureTopics(ctx, adm)
	if err == nil {
		// Its ACLs (topology.SagaPermissions), named when missing, before
		// anything is written: without them it would warn forever while
		// debited transfers wait.
		if perr := topology.CheckPermissionSet(ctx, admCl, s.Permissions()); perr != nil {
			err = fmt.Errorf("saga: %w", perr)
		}
	}
	if err == nil {
		err = s.checkOffsets(ctx, adm, admCl)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	for recreated := 0; ; recreated++ {
		began := time.Now()
		err := s.runSession(ctx, base, admCl, commandPartitions)
		if !errors.Is(err, errRecreateSession) {
			return err
		}
		if time.Since(began) > time.Minute {
			recreated = 0 // a session that lasted: not a loop
		}
		// The transactional producer is unusable but not fenced: a new
		// session (a new client with the same transactional id) aborts
		// whatever the old one left open, and reads from the committed
		// offsets again.
		wait := min(endBackoffMin<<min(recreated, 6), endBackoffMax)
		s.log.Warn("recreating the transactional session", "err", err, "wait", wait)
		s.mu.Lock()
		s.stats.SessionsRecreated++
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// errRecreateSession ends a session whose transactional producer cannot
// begin again for a reason other than a fence (topology.FencedError).
var errRecreateSession = errors.New("saga: the transactional producer needs a new session")

// Backoff after an End that failed without a fence, and between recreated
// sessions: doubles from endBackoffMin up to endBackoffMax.
const (
	endBackoffMin = 100 * time.Millisecond
	endBackoffMax = 5 * time.Second
)

// runSession runs one transactional session: from joining the group to
// ctx's end (nil), an error, or errRecreateSession.
func (s *Saga) runSession(ctx context.Context, base []kgo.Opt, admCl *kgo.Client, commandPartitions int32) error {
	// Abort what a previous incarnation left open before joining: its legs
	// hold back the command partitions they went to (topology/fence.go).
	if err := topology.FencePrevious(ctx, admCl, s.cfg.Group+"-"+s.cfg.InstanceID, s.cfg.TransactionTimeout); err != nil {
		s.log.Warn("could not fence the previous incarnation's transaction", "err", err)
	}
	sess, err := kgo.NewGroupTransactSession(append(base,
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeTopics(s.cfg.Events),
		// Never franz-go's silent reset to the start: a partition without
		// a committed offset is an error (checkOffsets committed a start
		// for every partition of a genuine first start).
		kgo.ConsumeStartOffset(kgo.NewOffset().AtCommitted()),
		kgo.OnPartitionsAssigned(s.assigned(ctx, base)),
		kgo.OnPartitionsRevoked(s.forget),
		kgo.OnPartitionsLost(s.forget),
		kgo.TransactionalID(s.cfg.Group+"-"+s.cfg.InstanceID),
		kgo.TransactionTimeout(s.cfg.TransactionTimeout),
		kgo.SessionTimeout(s.cfg.SessionTimeout),
		kgo.RebalanceTimeout(s.cfg.RebalanceTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)...)
	if err != nil {
		return fmt.Errorf("saga: transact session: %w", err)
	}
	defer sess.Close()
	s.log.Info("saga started", "group", s.cfg.Group, "events", s.cfg.Events, "redrive_after", s.cfg.RedriveAfter)
	// Polls end at least this often, so that re-drives and stalled
	// partitions are looked at while no event arrives.
	tick := min(time.Second, s.cfg.RedriveAfter/2)
	failedEnds := 0
	for {
		pollCtx, cancel := context.WithTimeout(ctx, tick)
		fetches := sess.PollRecords(pollCtx, s.cfg.MaxBatch)
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		var lost []int32
		fetches.EachError(func(t string, p int32, err error) {
			switch {
			case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			case strings.Contains(err.Error(), "no prior committed offset"):
				lost = append(lost, p)
			default:
				s.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		if len(lost) > 0 {
			return &OffsetsLostError{Group: s.cfg.Group, Topic: s.cfg.Events, Partitions: lost}
		}
		s.resumeStalled(sess.Client())
		redrive := s.due()
		if fetches.NumRecords() == 0 && len(redrive) == 0 {
			continue
		}
		if err := s.runBatch(ctx, sess, commandPartitions, fetches, redrive); err != nil {
			return err
		}
		if s.endFailed {
			// Not in a hot loop: consecutive failed ends back off.
			s.endFailed = false
			failedEnds++
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(min(endBackoffMin<<min(failedEnds-1, 6), endBackoffMax)):
			}
		} else {
			failedEnds = 0
		}
	}
}

// ensureTopics waits for the processor's topics and creates the state
// topic.
func (s *Saga) ensureTopics(ctx context.Context, adm *kadm.Client) (int32, error) {
	for {
		ends, err := adm.ListEndOffsets(ctx, s.cfg.Commands, s.cfg.Events)
		if err == nil {
			n, m := int32(len(ends[s.cfg.Commands])), int32(len(ends[s.cfg.Events]))
			if n > 0 && m > 0 && ends.Error() == nil {
				compacted := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
				if err := createTopic(ctx, adm, 1, compacted, s.cfg.StateTopic, s.Permissions()...); err != nil {
					return 0, err
				}
				return n, nil
			}
		}
		s.log.Info("waiting for the processor's topics", "commands", s.cfg.Commands, "events", s.cfg.Events)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// createTopic creates topic unless it exists; a refusal names the Create
// permission of perms it lacks.
func createTopic(ctx context.Context, adm *kadm.Client, partitions int32, configs map[string]*string, topic string, perms ...topology.Permission) error {
	resp, err := adm.CreateTopic(ctx, partitions, -1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
		return nil
	}
	if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
		for _, p := range perms {
			if p.Operation == kmsg.ACLOperationCreate && p.ResourceType == kmsg.ACLResourceTypeTopic && p.Resource == topic {
				err = &topology.PermissionError{Missing: []topology.Permission{p}}
			}
		}
	}
	return fmt.Errorf("saga: create topic %q: %w", topic, err)
}
