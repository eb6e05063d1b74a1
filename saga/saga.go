package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
	"github.com/kcqrs/kcqrs/wire"
)

// Config configures a Saga. New applies the defaults and validates it.
type Config struct {
	// Brokers are the seed brokers. Required.
	Brokers []string
	// Events is the processor's events topic. Default "events".
	Events string
	// Commands is the processor's command topic. Default "commands".
	Commands string
	// Replies is the saga's own reply topic: the processor answers the
	// saga's commands there. It is created (with the command topic's
	// partition count) when missing. Default "transfer-replies".
	Replies string
	// Group is the saga's consumer group. Default "kcqrs-transfers".
	Group string
	// InstanceID identifies this saga worker, stable across restarts (the
	// transactional id is Group + "-" + InstanceID). Required.
	InstanceID string
	// TransactionTimeout is the broker-side timeout of an open transaction.
	// Default 10s.
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
}

func (c *Config) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Events, "events")
	def(&c.Commands, "commands")
	def(&c.Replies, "transfer-replies")
	def(&c.Group, "kcqrs-transfers")
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
	if c.TransactionTimeout < time.Second {
		errs = append(errs, fmt.Errorf("transaction timeout %v < 1s", c.TransactionTimeout))
	}
	if c.SessionTimeout >= c.TransactionTimeout {
		errs = append(errs, fmt.Errorf("session timeout %v must be below the transaction timeout %v", c.SessionTimeout, c.TransactionTimeout))
	}
	if c.RebalanceTimeout < time.Second {
		errs = append(errs, fmt.Errorf("rebalance timeout %v < 1s", c.RebalanceTimeout))
	}
	if c.Replies == c.Events || c.Replies == c.Commands || c.Events == c.Commands {
		errs = append(errs, fmt.Errorf("topics must differ: events %q, commands %q, replies %q", c.Events, c.Commands, c.Replies))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("saga: invalid config: %w", errors.Join(errs...))
}

// Stats counts what a saga did, in committed transactions only.
type Stats struct {
	// Debits is the number of TransferDebited events seen (each answered by
	// one CreditForTransfer).
	Debits int64
	// Completed and Refunded count CompleteTransfer and RefundTransfer
	// commands sent.
	Completed, Refunded int64
	// Anomalies counts replies that should never happen: a complete or refund
	// that was not accepted. Each is logged as an error.
	Anomalies    int64
	Transactions int64
	Aborted      int64
}

// Saga is one worker of the transfer process manager.
type Saga struct {
	cfg   Config
	reg   *topology.Registry
	log   *slog.Logger
	codec map[string]*schemas.Codec

	mu    sync.Mutex
	stats Stats
}

// New validates cfg and returns a saga; Run starts it. reg must serve the
// account aggregate (it decodes events and replies).
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
	s := &Saga{cfg: cfg, reg: reg, log: cfg.Logger.With("saga", cfg.InstanceID), codec: map[string]*schemas.Codec{}}
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
	return s.stats
}

// Leg names the step of a transfer a saga command is.
type Leg string

// The legs the saga sends.
const (
	LegCredit   Leg = "credit"
	LegComplete Leg = "complete"
	LegRefund   Leg = "refund"
)

// Ref identifies one transfer by its debit event; it travels as the
// correlation id of the saga's commands and comes back on their replies.
type Ref struct {
	// Source is the debited account; Version the version of its
	// TransferDebited event: together they name the transfer forever.
	Source  string `json:"source"`
	Version int64  `json:"version"`
	// TransferID, Target and Amount repeat the debit's fields.
	TransferID string `json:"transferId"`
	Target     string `json:"target"`
	Amount     int64  `json:"amount"`
	Leg        Leg    `json:"leg"`
}

// CommandID is the deterministic command id of a leg: the same debit always
// yields the same ids, so a leg produced twice is deduplicated.
func (r Ref) CommandID() string {
	return "transfer:" + strconv.Quote(r.Source) + ":" + strconv.FormatInt(r.Version, 10) + ":" + string(r.Leg)
}

// DecodeRef parses a correlation id made by the saga. Anything else (a
// reply that is not the saga's, garbage) is an error.
func DecodeRef(b []byte) (Ref, error) {
	var r Ref
	if err := json.Unmarshal(b, &r); err != nil {
		return Ref{}, fmt.Errorf("saga: correlation id: %w", err)
	}
	switch {
	case r.Leg != LegCredit && r.Leg != LegComplete && r.Leg != LegRefund:
		return Ref{}, fmt.Errorf("saga: correlation id: unknown leg %q", r.Leg)
	case r.Source == "" || r.Target == "" || r.TransferID == "":
		return Ref{}, errors.New("saga: correlation id: missing source, target or transfer id")
	case r.Version < 1 || r.Amount < 1:
		return Ref{}, fmt.Errorf("saga: correlation id: version %d, amount %d", r.Version, r.Amount)
	}
	return r, nil
}

func (r Ref) encode() []byte {
	b, _ := json.Marshal(r) // a struct of strings and ints always marshals
	return b
}

// Permissions are the ACLs the saga needs (with the one its processor
// needs to answer it).
func (s *Saga) Permissions() []topology.Permission {
	c := s.cfg
	return topology.SagaPermissions(topology.SagaNames{Events: c.Events, Commands: c.Commands, Replies: c.Replies, Group: c.Group, InstanceID: c.InstanceID})
}

// Run processes events and replies until ctx is canceled (then it returns
// nil) or a non-retryable error happens.
func (s *Saga) Run(ctx context.Context) error {
	base := append([]kgo.Opt{kgo.SeedBrokers(s.cfg.Brokers...)}, s.cfg.ClientOpts...)
	admCl, err := kgo.NewClient(base...)
	if err != nil {
		return fmt.Errorf("saga: admin client: %w", err)
	}
	defer admCl.Close()
	commandPartitions, err := s.ensureTopics(ctx, kadm.NewClient(admCl))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// Its ACLs (topology.SagaPermissions), named when missing: without
	// them it would warn forever while debited transfers wait.
	if err := topology.CheckPermissionSet(ctx, admCl, s.Permissions()); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("saga: %w", err)
	}
	sess, err := kgo.NewGroupTransactSession(append(base,
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeTopics(s.cfg.Events, s.cfg.Replies),
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
	s.log.Info("saga started", "group", s.cfg.Group, "events", s.cfg.Events, "replies", s.cfg.Replies)
	for {
		fetches := sess.PollRecords(ctx, s.cfg.MaxBatch)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			s.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		if fetches.NumRecords() == 0 {
			continue
		}
		if err := s.runBatch(ctx, sess, commandPartitions, fetches); err != nil {
			return err
		}
	}
}

// ensureTopics waits for the processor's topics and creates the reply topic.
func (s *Saga) ensureTopics(ctx context.Context, adm *kadm.Client) (int32, error) {
	for {
		ends, err := adm.ListEndOffsets(ctx, s.cfg.Commands, s.cfg.Events)
		if err == nil {
			n, m := int32(len(ends[s.cfg.Commands])), int32(len(ends[s.cfg.Events]))
			if n > 0 && m > 0 && ends.Error() == nil {
				resp, err := adm.CreateTopic(ctx, n, -1, nil, s.cfg.Replies)
				if err == nil {
					err = resp.Err
				}
				if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
					return n, nil
				}
				if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
					for _, p := range s.Permissions() {
						if p.Operation == kmsg.ACLOperationCreate {
							err = &topology.PermissionError{Missing: []topology.Permission{p}}
						}
					}
				}
				return 0, fmt.Errorf("saga: create reply topic %q: %w", s.cfg.Replies, err)
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

// batchStats is what one transaction did; added to Stats when it commits.
type batchStats struct {
	mu  sync.Mutex
	err error
	Stats
}

func (s *Saga) runBatch(ctx context.Context, sess *kgo.GroupTransactSession, partitions int32, fetches kgo.Fetches) error {
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("saga: begin transaction: %w", err)
	}
	b := &batchStats{}
	fetches.EachRecord(func(r *kgo.Record) {
		for _, out := range s.react(r, b) {
			rec, err := s.command(out, partitions)
			if err != nil {
				b.fail(err)
				return
			}
			sess.Produce(ctx, rec, func(r *kgo.Record, err error) {
				if err != nil {
					b.fail(fmt.Errorf("produce %s: %w", header(r, wire.HeaderCommandID), err))
				}
			})
		}
	})
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.TransactionTimeout)
	defer cancel()
	// Flush first so that every produce result is known before deciding:
	// offsets must never commit without all the commands they caused.
	if err := sess.Client().Flush(endCtx); err != nil {
		b.fail(fmt.Errorf("flush: %w", err))
	}
	try := kgo.TryCommit
	if b.failed() != nil {
		try = kgo.TryAbort
		s.log.Error("aborting transaction", "err", b.failed())
	}
	committed, err := sess.End(endCtx, try)
	s.mu.Lock()
	s.stats.Transactions++
	if committed {
		s.stats.Debits += b.Debits
		s.stats.Completed += b.Completed
		s.stats.Refunded += b.Refunded
		s.stats.Anomalies += b.Anomalies
	} else {
		s.stats.Aborted++
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("saga: end transaction: %w", err)
	}
	return nil
}

func (b *batchStats) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *batchStats) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
}

// step is one command the saga sends.
type step struct {
	ref Ref
	to  string // the account the command is for
	cmd aggregates.Command
}

// react is the saga's logic: the commands one consumed record causes. It is
// a function of the record alone.
func (s *Saga) react(r *kgo.Record, b *batchStats) []step {
	if r.Topic == s.cfg.Events {
		env, ev, err := s.reg.DecodeEvent(r.Value)
		if err != nil {
			// Not ours to judge (another aggregate's event this registry
			// does not serve, say): the saga only cares about debits.
			return nil
		}
		d, ok := ev.(account.TransferDebited)
		if !ok || env.AggregateType != account.Name {
			return nil
		}
		b.Debits++
		ref := Ref{Source: env.AggregateID, Version: env.Version, TransferID: d.TransferID, Target: d.To, Amount: d.Amount, Leg: LegCredit}
		return []step{{ref, d.To, account.CreditForTransfer{TransferID: d.TransferID, From: env.AggregateID, DebitVersion: env.Version, Amount: d.Amount}}}
	}
	ref, err := DecodeRef([]byte(header(r, wire.HeaderCorrelationID)))
	if err != nil {
		s.log.Warn("reply without a saga correlation id ignored", "partition", r.Partition, "offset", r.Offset, "err", err)
		return nil
	}
	rep, err := s.reg.DecodeReply(r.Value, header(r, wire.HeaderContentType))
	if err != nil {
		// The processor wrote it; a reply we cannot read leaves the transfer
		// pending (visible on the source), never half-done.
		b.Anomalies++
		s.log.Error("undecodable reply; transfer stays pending", "transfer", ref.TransferID, "source", ref.Source, "err", err)
		return nil
	}
	switch ref.Leg {
	case LegCredit:
		// already_credited: this debit was credited before (a replay of old
		// events, say): complete it, never refund it.
		if rep.Status == wire.StatusAccepted || (rep.Status == wire.StatusRejected && rep.Code == account.CodeAlreadyCredited) {
			b.Completed++
			ref.Leg = LegComplete
			return []step{{ref, ref.Source, account.CompleteTransfer{TransferID: ref.TransferID}}}
		}
		// Every other status is a command that had no effect: compensate.
		b.Refunded++
		ref.Leg = LegRefund
		reason := string(rep.Status) + " " + rep.Code + ": " + rep.Message
		return []step{{ref, ref.Source, account.RefundTransfer{TransferID: ref.TransferID, Reason: reason}}}
	default:
		if rep.Status != wire.StatusAccepted {
			b.Anomalies++
			s.log.Error("transfer leg not accepted", "leg", ref.Leg, "transfer", ref.TransferID, "source", ref.Source, "status", rep.Status, "code", rep.Code, "message", rep.Message)
		}
		return nil
	}
}

// command builds the record of one step.
func (s *Saga) command(st step, partitions int32) (*kgo.Record, error) {
	val, err := s.codec[st.cmd.CommandType()].Encode(st.cmd)
	if err != nil {
		return nil, fmt.Errorf("saga: encode %s: %w", st.cmd.CommandType(), err)
	}
	return &kgo.Record{
		Topic:     s.cfg.Commands,
		Partition: topology.PartitionFor([]byte(st.to), partitions),
		Key:       []byte(st.to),
		Value:     val,
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte(st.ref.CommandID())},
			{Key: wire.HeaderCommandType, Value: []byte(st.cmd.CommandType())},
			{Key: wire.HeaderAggregateType, Value: []byte(account.Name)},
			{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeAvro)},
			{Key: wire.HeaderCorrelationID, Value: st.ref.encode()},
			{Key: wire.HeaderReplyTopic, Value: []byte(s.cfg.Replies)},
		},
	}, nil
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
