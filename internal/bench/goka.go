package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/projection"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// gokaState is the group-table value: the account and its version.
type gokaState struct {
	version int64
	state   account.Account
}

// gokaPeer is the account domain the idiomatic goka way: one processor
// group whose table holds each account's state, decide/evolve in the
// callback, events and replies emitted. At-least-once, as goka is.
type gokaPeer struct {
	proc      *goka.Processor
	handled   atomic.Int64
	cancel    context.CancelFunc
	done      chan error
	stateCdc  *schemas.Codec
	commands  map[string]*schemas.Codec
	events    map[string]*schemas.Codec
	registry  *topology.Registry
	replies   goka.Stream
	eventsOut goka.Stream
}

// gokaConfig is sarama's config for the embedded broker and real clusters
// alike: kfake speaks OffsetFetch v6 in a way sarama's newer protocol
// versions do not decode, so the protocol stays at 2.3.0.
func gokaConfig() *sarama.Config {
	cfg := goka.DefaultConfig()
	cfg.Version = sarama.V2_3_0_0
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	return cfg
}

// stateCodec is the group table's codec: the version (varint) followed by
// the account state in Avro single-object encoding.
type stateCodec struct{ c *schemas.Codec }

func (sc stateCodec) Encode(v any) ([]byte, error) {
	s, ok := v.(*gokaState)
	if !ok {
		return nil, fmt.Errorf("goka peer: state %T", v)
	}
	enc, err := sc.c.Encode(s.state)
	if err != nil {
		return nil, err
	}
	return append(binary.AppendVarint(nil, s.version), enc...), nil
}

func (sc stateCodec) Decode(b []byte) (any, error) {
	v, n := binary.Varint(b)
	if n <= 0 {
		return nil, errors.New("goka peer: bad state version")
	}
	s := &gokaState{version: v}
	if err := sc.c.Decode(b[n:], &s.state); err != nil {
		return nil, err
	}
	return s, nil
}

func startGoka(o *Options, topics topology.Topics, group, stateDir string) (*gokaPeer, error) {
	set, err := schemas.LoadAccount()
	if err != nil {
		return nil, err
	}
	reg, err := examples.Registry()
	if err != nil {
		return nil, err
	}
	gp := &gokaPeer{commands: map[string]*schemas.Codec{}, events: map[string]*schemas.Codec{}, registry: reg,
		replies: goka.Stream(topics.Replies), eventsOut: goka.Stream(topics.Events), done: make(chan error, 1)}
	if gp.stateCdc, err = set.Codec("Account"); err != nil {
		return nil, err
	}
	for _, c := range account.Type.Commands {
		if gp.commands[c.CommandType()], err = set.Codec(c.CommandType()); err != nil {
			return nil, err
		}
	}
	for _, e := range account.Type.Events {
		if gp.events[e.EventType()], err = set.Codec(e.EventType()); err != nil {
			return nil, err
		}
	}
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication, tmc.Stream.Replication = 1, 1
	cfg := gokaConfig()
	graph := goka.DefineGroup(goka.Group(group),
		goka.Input(goka.Stream(topics.Commands), new(codec.Bytes), gp.handle),
		goka.Persist(stateCodec{gp.stateCdc}),
		goka.Output(gp.eventsOut, new(codec.Bytes)),
		goka.Output(gp.replies, new(codec.Bytes)),
	)
	gp.proc, err = goka.NewProcessor(o.Brokers, graph,
		goka.WithHasher(projection.Murmur2),
		goka.WithStorageBuilder(storage.DefaultBuilder(stateDir)),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(cfg, tmc)),
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(cfg)),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(cfg)),
		goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(cfg)),
		goka.WithLogger(log.New(io.Discard, "", 0)),
	)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	gp.cancel = cancel
	go func() { gp.done <- gp.proc.Run(ctx) }()
	return gp, nil
}

// handle decides and evolves one command, as a goka user would write it:
// header says the type, the table holds the state.
func (gp *gokaPeer) handle(ctx goka.Context, msg any) {
	defer gp.handled.Add(1)
	h := ctx.Headers()
	typ, id := string(h[wire.HeaderCommandType]), string(h[wire.HeaderCommandID])
	rep := wire.Reply{CommandID: id, AggregateType: "account", AggregateID: ctx.Key()}
	cdc := gp.commands[typ]
	var cmd aggregates.Command
	switch typ {
	case "OpenAccount":
		var c account.OpenAccount
		if err := cdc.Decode(msg.([]byte), &c); err != nil {
			ctx.Fail(err)
		}
		cmd = c
	case "Deposit":
		var c account.Deposit
		if err := cdc.Decode(msg.([]byte), &c); err != nil {
			ctx.Fail(err)
		}
		cmd = c
	default:
		ctx.Fail(fmt.Errorf("goka peer: command type %q not in the benchmark", typ))
	}
	s, _ := ctx.Value().(*gokaState)
	if s == nil {
		s = &gokaState{}
	}
	events, err := account.Decide(s.state, cmd)
	if rej, ok := aggregates.AsRejection(err); ok {
		rep.Status, rep.Code, rep.Message, rep.Version = wire.StatusRejected, rej.Code, rej.Message, s.version
	} else if err != nil {
		ctx.Fail(err)
	} else {
		for _, e := range events {
			s.state = account.Evolve(s.state, e)
			s.version++
			payload, err := gp.events[e.EventType()].Encode(e)
			if err != nil {
				ctx.Fail(err)
			}
			ctx.Emit(gp.eventsOut, ctx.Key(), payload)
		}
		ctx.SetValue(s)
		rep.Status, rep.Version, rep.Events = wire.StatusAccepted, s.version, int32(len(events))
	}
	val, err := gp.registry.EncodeReply(rep, wire.ContentTypeAvro)
	if err != nil {
		ctx.Fail(err)
	}
	ctx.Emit(gp.replies, ctx.Key(), val)
}

func (gp *gokaPeer) processed() (int64, error) {
	select {
	case err := <-gp.done:
		gp.done <- err
		if err == nil {
			err = errors.New("goka processor stopped")
		}
		return 0, err
	default:
	}
	return gp.handled.Load(), nil
}

func (gp *gokaPeer) stop() {
	gp.cancel()
	select {
	case <-gp.done:
	case <-time.After(30 * time.Second):
	}
}
