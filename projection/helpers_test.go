package projection

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

const testPartitions = 4

func testLogger() *slog.Logger {
	var out io.Writer = io.Discard
	if os.Getenv("KCQRS_TEST_LOG") != "" {
		out = os.Stderr
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func testRegistry(t testing.TB) *topology.Registry {
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// env is a broker with an events topic, and a producer writing event
// envelopes to it as the processor does (murmur2 by aggregate id).
type env struct {
	t       testing.TB
	cluster *kfake.Cluster
	brokers []string
	cl      *kgo.Client
	adm     *kadm.Client
	reg     *topology.Registry
	evCodec *schemas.Codec
	acc     *schemas.Set
}

func newEnv(t testing.TB) *env {
	t.Helper()
	c, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, testPartitions, 1, map[string]*string{"retention.ms": ptr("-1")}, "events"); err != nil {
		t.Fatal(err)
	}
	e := codecEnv(t)
	e.cluster, e.brokers, e.cl, e.adm = c, c.ListenAddrs(), cl, adm
	return e
}

// codecEnv is an env without a broker: it encodes events.
func codecEnv(t testing.TB) *env {
	t.Helper()
	envs, err := schemas.LoadEnvelopes()
	if err != nil {
		t.Fatal(err)
	}
	evc, err := envs.Codec("kcqrs.Event")
	if err != nil {
		t.Fatal(err)
	}
	acc, err := schemas.LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, reg: testRegistry(t), evCodec: evc, acc: acc}
}

// encode returns the events-topic value of ev as version v of account id.
func (e *env) encode(aggType, id string, v int64, eventType string, ev aggregates.Event) []byte {
	e.t.Helper()
	var payload []byte
	if ev != nil {
		c, err := e.acc.Codec("kcqrs.example.account." + ev.EventType())
		if err != nil {
			e.t.Fatal(err)
		}
		if payload, err = c.Encode(ev); err != nil {
			e.t.Fatal(err)
		}
		eventType = ev.EventType()
	}
	b, err := e.evCodec.Encode(wire.Event{AggregateType: aggType, AggregateID: id, Version: v, EventType: eventType,
		CommandID: fmt.Sprintf("cmd-%s-%d", id, v), TimestampMillis: time.Now().UnixMilli(), Payload: payload})
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) produce(recs ...*kgo.Record) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range recs {
		if r.Topic == "" {
			r.Topic = "events"
		}
	}
	if err := e.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
}

func rec(key string, value []byte) *kgo.Record { return &kgo.Record{Key: []byte(key), Value: value} }

func (e *env) config(stateDir string, version int) Config {
	return Config{Brokers: e.brokers, StateDir: stateDir, Registry: e.reg, Logger: testLogger(),
		Names: Names{Version: version}, CommitInterval: 50 * time.Millisecond}
}

// running is a projector run in the background.
type running struct {
	*Projector
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// builtV1 is a projector and a query server of read models version 1 on
// one state directory, with the read models built (buildV1).
type builtV1 struct {
	dir        string
	cfg        Config
	p          *running
	s          *Server
	stopServer func()
	f          folded // the fold of the events topic the models hold
}

// buildV1 starts a projector and a query server of version 1 on a new
// state directory and waits until the read models hold the fold of the n
// events of the topic.
func (e *env) buildV1(t *testing.T, n int) builtV1 {
	t.Helper()
	b := builtV1{dir: t.TempDir()}
	b.cfg = e.config(b.dir, 1)
	b.p = e.startProjector(b.cfg)
	b.s, b.stopServer = e.startStoppableServer(b.dir, 1)
	b.f = foldTopic(t, e.brokers, n)
	eventually(t, "read models built", func() (bool, string) { return b.f.matches(b.s.Handler()) })
	return b
}

func (e *env) startProjector(cfg Config) *running {
	e.t.Helper()
	p, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Projector: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	e.t.Cleanup(func() { _ = r.stop() })
	return r
}

func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(60 * time.Second):
			r.err = fmt.Errorf("projector did not stop in 60s")
		}
	})
	return r.err
}

// eventually polls cond until it holds or 60s passed.
func eventually(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not reached in 60s; last: %s", what, last)
}

// partitionOf is the events partition of a key (murmur2, as the processor).
func partitionOf(key string) int32 {
	return int32((murmur2Sum([]byte(key)) & 0x7fffffff) % testPartitions)
}

// runUntilItFails starts a projector on cfg and waits until it stops with
// an error on what the broker refuses (refused counts the refusals).
func (e *env) runUntilItFails(t *testing.T, cfg Config, refused *atomic.Int64, what string) {
	t.Helper()
	p := e.startProjector(cfg)
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup's stop
		if err == nil {
			t.Fatalf("projector stopped without an error on the %s", what)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("projector did not fail on the %s (%d refused)", what, refused.Load())
	}
}

// testOwnerIndex is the owner index's blind index under a new random
// master key.
func testOwnerIndex(t *testing.T) *shred.BlindIndex {
	t.Helper()
	mk := make([]byte, shred.KeyLen)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}
	master, err := shred.NewMasterKey(mk)
	if err != nil {
		t.Fatal(err)
	}
	owners, err := shred.NewBlindIndex(master, OwnerIndexPurpose)
	if err != nil {
		t.Fatal(err)
	}
	return owners
}
