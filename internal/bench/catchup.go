package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/projection"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/wire"
)

// catchUpResult is one round of the projector catch-up measurement: a
// backlog of account events folded by a fresh version of the three read
// models, against a raw franz-go consume of the same topic and a goka
// processor that only counts the events (goka's floor), events/s.
type catchUpResult struct {
	Events                   int
	Projector, Raw, GokaNoop float64
	// Phases says where the wall time of the goka floor and of the
	// projector went: seconds from the start until the first event was
	// handled, until every event was, and (projector) until every write was
	// acknowledged and the downstream groups had merged everything.
	Phases string
}

// phaseClock records when the conditions of a catch-up were first seen.
type phaseClock struct {
	start       time.Time
	first, read time.Duration
	written     time.Duration
	owners      time.Duration // the owners index has an entry per account
}

func (c *phaseClock) mark(d *time.Duration, ok bool) {
	if ok && *d == 0 {
		*d = time.Since(c.start)
	}
}

// catchUpEvents builds the backlog: accounts of a few owners in two
// currencies, each opened and then deposited into, interleaved.
func catchUpEvents(accounts, events int) ([]*kgo.Record, error) {
	envs, err := schemas.LoadEnvelopes()
	if err != nil {
		return nil, err
	}
	evc, err := envs.Codec("kcqrs.Event")
	if err != nil {
		return nil, err
	}
	acc, err := schemas.LoadAccount()
	if err != nil {
		return nil, err
	}
	openC, err := acc.Codec("kcqrs.example.account.AccountOpened")
	if err != nil {
		return nil, err
	}
	depC, err := acc.Codec("kcqrs.example.account.MoneyDeposited")
	if err != nil {
		return nil, err
	}
	versions := make([]int64, accounts)
	recs := make([]*kgo.Record, 0, events)
	now := time.Now().UnixMilli()
	for i := 0; len(recs) < events; i++ {
		a := i % accounts
		id := fmt.Sprintf("acc-%07d", a)
		versions[a]++
		v := versions[a]
		var typ string
		var payload []byte
		if v == 1 {
			typ = "AccountOpened"
			payload, err = openC.Encode(account.AccountOpened{Owner: fmt.Sprintf("owner-%d", a%100), Currency: []string{"EUR", "USD"}[a%2]})
		} else {
			typ = "MoneyDeposited"
			payload, err = depC.Encode(account.MoneyDeposited{Amount: 1, Balance: v - 1})
		}
		if err != nil {
			return nil, err
		}
		val, err := evc.Encode(wire.Event{AggregateType: "account", AggregateID: id, Version: v, EventType: typ,
			CommandID: fmt.Sprintf("c-%s-%d", id, v), TimestampMillis: now, Payload: payload})
		if err != nil {
			return nil, err
		}
		recs = append(recs, &kgo.Record{Key: []byte(id), Value: val})
	}
	return recs, nil
}

// runCatchUp produces the backlog to a new events topic and measures the
// three consumers of it, one after the other.
func runCatchUp(ctx context.Context, o *Options, adm *kadm.Client, prod *kgo.Client, round int, profile io.Writer) (catchUpResult, error) {
	res := catchUpResult{Events: o.Commands}
	topic := fmt.Sprintf("%sr%d-proj-events", o.Prefix, round)
	if _, err := adm.CreateTopic(ctx, o.Partitions, 1, map[string]*string{"retention.ms": ptr("-1")}, topic); err != nil {
		return res, err
	}
	recs, err := catchUpEvents(o.Accounts, o.Commands)
	if err != nil {
		return res, err
	}
	for _, r := range recs {
		r.Topic = topic
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return res, fmt.Errorf("produce the backlog: %w", err)
	}

	// Raw franz-go consume.
	start := time.Now()
	cl, err := kgo.NewClient(append(o.clientOpts(), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return res, err
	}
	n := 0
	for n < len(recs) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			cl.Close()
			return res, err
		}
		n += fs.NumRecords()
	}
	cl.Close()
	res.Raw = float64(n) / time.Since(start).Seconds()

	// goka's floor: a stateless processor that counts.
	var counted atomic.Int64
	g := goka.DefineGroup(goka.Group(topic+"-goka-noop"),
		goka.Input(goka.Stream(topic), rawBytes{}, func(goka.Context, any) { counted.Add(1) }))
	scfg := func() *sarama.Config {
		c := goka.DefaultConfig()
		c.Version = sarama.V2_3_0_0
		c.Consumer.IsolationLevel = sarama.ReadCommitted
		c.Consumer.Offsets.Initial = sarama.OffsetOldest
		return c
	}
	tm := goka.NewTopicManagerConfig()
	tm.Table.Replication, tm.Stream.Replication = 1, 1
	start = time.Now()
	cpu0 := processCPU()
	floorClock := phaseClock{start: start}
	var floorDone, projDone time.Time
	proc, err := goka.NewProcessor(o.Brokers, g,
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(scfg())),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(scfg())),
		goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(scfg())),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(scfg(), tm)),
		goka.WithLogger(quietGoka{}))
	if err != nil {
		return res, fmt.Errorf("goka floor: %w", err)
	}
	if err := runUntil(ctx, o.Timeout, proc.Run, func() bool {
		n := counted.Load()
		floorClock.mark(&floorClock.first, n > 0)
		return n >= int64(len(recs))
	}, &floorDone); err != nil {
		return res, fmt.Errorf("goka floor: %w (counted %d of %d)", err, counted.Load(), len(recs))
	}
	res.GokaNoop = float64(len(recs)) / floorDone.Sub(start).Seconds()
	floorTotal, floorStop := floorDone.Sub(start), time.Since(floorDone)
	floorCPU := processCPU() - cpu0

	// The projector: a fresh version, all three read models.
	reg, err := examples.Registry()
	if err != nil {
		return res, err
	}
	p, err := projection.New(projection.Config{Brokers: o.Brokers, ClientOpts: o.ClientOpts, EventsTopic: topic,
		Names: projection.Names{Prefix: topic, Version: 1}, StateDir: filepath.Join(o.WorkDir, topic+"-proj"),
		Registry: reg, Logger: slog.New(slog.NewTextHandler(o.logOut(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return res, err
	}
	if profile != nil {
		if err := pprof.StartCPUProfile(profile); err != nil {
			return res, err
		}
		defer pprof.StopCPUProfile()
	}
	start = time.Now()
	cpu0 = processCPU()
	clock := phaseClock{start: start}
	var ready atomic.Int64 // nanoseconds from start until every group ran
	go func() {
		if p.WaitReady(ctx) == nil {
			ready.Store(int64(time.Since(start)))
		}
	}()
	if err := runUntil(ctx, o.Timeout, p.Run, func() bool {
		// Every event read and written (its table record acknowledged),
		// the downstream groups merged every record sent to them (currency
		// counters once per batch), the owners index an entry per account.
		s, own := p.Stats(), p.GroupStats()[string(p.Names().OwnersGroup())]
		clock.mark(&clock.first, s.Events > 0)
		clock.mark(&clock.read, s.Events >= int64(len(recs)))
		clock.mark(&clock.written, s.Events >= int64(len(recs)) && s.Written >= s.Applied)
		clock.mark(&clock.owners, own.Applied+own.Stale >= int64(min(o.Accounts, len(recs))))
		return s.Events >= int64(len(recs)) && s.Written >= s.Applied && s.Merged+s.StaleMerges >= s.Forwarded &&
			own.Applied+own.Stale >= int64(min(o.Accounts, len(recs)))
	}, &projDone); err != nil {
		return res, fmt.Errorf("projector: %w (%+v)", err, p.Stats())
	}
	res.Projector = float64(len(recs)) / projDone.Sub(start).Seconds()
	projCPU := processCPU() - cpu0
	res.Phases = fmt.Sprintf("goka floor: first event %.2fs, all %.2fs (then stopped in %.2fs); projector: groups ready %.2fs, first event %.2fs, all read %.2fs, written %.2fs, merged downstream %.2fs (owners %.2fs; then stopped in %.2fs); CPU of the whole process (broker included) from start to stopped: goka floor %.2fs, projector %.2fs (%.2fx)",
		floorClock.first.Seconds(), floorTotal.Seconds(), floorStop.Seconds(), time.Duration(ready.Load()).Seconds(), clock.first.Seconds(), clock.read.Seconds(), clock.written.Seconds(), projDone.Sub(start).Seconds(), clock.owners.Seconds(), time.Since(projDone).Seconds(), floorCPU.Seconds(), projCPU.Seconds(), projCPU.Seconds()/floorCPU.Seconds())
	if profile != nil {
		pprof.StopCPUProfile()
	}
	return res, nil
}

// runUntil runs run until done holds, then stops it. doneAt is when done
// held: what a catch-up figure measures (the read models are complete and
// queryable then), not the stop that follows.
func runUntil(ctx context.Context, timeout time.Duration, run func(context.Context) error, done func() bool, doneAt *time.Time) error {
	rctx, cancel := context.WithCancel(ctx)
	errs := make(chan error, 1)
	go func() { errs <- run(rctx) }()
	defer func() { cancel(); <-errs }()
	deadline := time.Now().Add(timeout)
	for !done() {
		select {
		case err := <-errs:
			errs <- err
			return fmt.Errorf("stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done in %v", timeout)
		}
	}
	*doneAt = time.Now()
	return nil
}

type rawBytes struct{}

func (rawBytes) Encode(v any) ([]byte, error) { b, _ := v.([]byte); return b, nil }
func (rawBytes) Decode(b []byte) (any, error) { return b, nil }

type quietGoka struct{}

func (quietGoka) Print(...any)          {}
func (quietGoka) Println(...any)        {}
func (quietGoka) Printf(string, ...any) {}
func ptr(s string) *string              { return &s }
