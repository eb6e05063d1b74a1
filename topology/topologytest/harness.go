// Package topologytest runs a processor for your aggregates against an
// in-process Kafka-protocol broker, so you can test your aggregate types end
// to end (commands in; events, snapshots and replies out) with no Kafka
// installed. Every harness uses its own broker on a free port and its own
// temporary state directories, so tests may run in parallel.
package topologytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// Harness is a broker plus the processors a test starts on it.
type Harness struct {
	T       testing.TB
	Cluster *kfake.Cluster
	Brokers []string
	// Base is the config every processor starts from (Brokers, Partitions,
	// a quiet logger); StartProcessor fills InstanceID and StateDir.
	Base     topology.Config
	Registry *topology.Registry

	mu     sync.Mutex
	client *client.Client
}

// New starts a broker with partitions partitions per topic (created by the
// first processor) and returns the harness. Everything is closed by
// t.Cleanup.
func New(t testing.TB, reg *topology.Registry, partitions int32) *Harness {
	t.Helper()
	c, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var logOut io.Writer = io.Discard
	if os.Getenv("KCQRS_TEST_LOG") != "" {
		logOut = os.Stderr
	}
	h := &Harness{
		T: t, Cluster: c, Brokers: c.ListenAddrs(), Registry: reg,
		Base: topology.Config{
			Partitions:     partitions,
			CommitInterval: 50 * time.Millisecond,
			Logger:         slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug})),
		},
	}
	h.Base.Brokers = h.Brokers
	return h
}

// Running is a processor started by the harness.
type Running struct {
	*topology.Processor
	StateDir string
	cancel   context.CancelFunc
	finished chan struct{}
	err      error
}

// StartProcessor starts a processor with the given instance id and state
// directory ("" for a new temporary one). Optional mutators adjust its config.
// It is stopped by t.Cleanup if the test does not stop it.
func (h *Harness) StartProcessor(instanceID, stateDir string, mutate ...func(*topology.Config)) *Running {
	h.T.Helper()
	if stateDir == "" {
		stateDir = h.T.TempDir()
	}
	cfg := h.Base
	cfg.InstanceID, cfg.StateDir = instanceID, stateDir
	cfg.Logger = cfg.Logger.With("instance", instanceID)
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := topology.New(cfg, h.Registry)
	if err != nil {
		h.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Processor: p, StateDir: stateDir, cancel: cancel, finished: make(chan struct{})}
	go func() {
		r.err = p.Run(ctx)
		if r.err != nil {
			cfg.Logger.Error("processor ended", "err", r.err)
		}
		close(r.finished)
	}()
	h.T.Cleanup(func() { _ = r.Stop() })
	return r
}

// Stop cancels the processor and waits for it to end, returning Run's error.
// Stopping twice is harmless.
func (r *Running) Stop() error {
	r.cancel()
	select {
	case <-r.finished:
		return r.err
	case <-time.After(60 * time.Second):
		return errors.New("topologytest: processor did not stop within 60s")
	}
}

// Done is closed when the processor's Run returned; Err then tells why.
func (r *Running) Done() <-chan struct{} { return r.finished }

// Err is Run's result once Done is closed.
func (r *Running) Err() error {
	select {
	case <-r.finished:
		return r.err
	default:
		return nil
	}
}

// Client returns a request/reply client, waiting (up to 30s) for the first
// processor to have created the topics.
func (h *Harness) Client() *client.Client {
	h.T.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.client != nil {
		return h.client
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cl, err := client.New(ctx, client.Config{Brokers: h.Brokers})
		cancel()
		if err == nil {
			h.client = cl
			h.T.Cleanup(cl.Close)
			return cl
		}
		if time.Now().After(deadline) {
			h.T.Fatalf("topologytest: no client: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Send sends one command and waits up to 30s for its reply.
func (h *Harness) Send(cmd client.Command) wire.Reply {
	h.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := h.Client().Send(ctx, cmd)
	if err != nil {
		h.T.Fatalf("topologytest: send %s to %s/%s: %v", cmd.Type, cmd.AggregateType, cmd.AggregateID, err)
	}
	return r
}

// Admin returns an admin client on the harness's broker.
func (h *Harness) Admin() *kadm.Client {
	h.T.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.Brokers...))
	if err != nil {
		h.T.Fatal(err)
	}
	h.T.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// ReadTopic returns every committed record of topic (read_committed), in
// partition then offset order, reading up to the last stable offset of each
// partition at the time of the call.
func (h *Harness) ReadTopic(topic string) []*kgo.Record {
	h.T.Helper()
	recs, err := ReadCommitted(context.Background(), h.Brokers, topic)
	if err != nil {
		h.T.Fatalf("topologytest: read %s: %v", topic, err)
	}
	return recs
}

// ReadCommitted reads every committed record of topic up to its current last
// stable offsets.
func ReadCommitted(ctx context.Context, brokers []string, topic string) ([]*kgo.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	ends, err := kadm.NewClient(admCl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	want := map[int32]int64{}
	start := map[int32]kgo.Offset{}
	for p, o := range ends[topic] {
		if o.Err != nil {
			return nil, o.Err
		}
		if o.Offset > 0 {
			want[p] = o.Offset
			start[p] = kgo.NewOffset().AtStart()
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	byPart := map[int32][]*kgo.Record{}
	for len(want) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: %w (still waiting for %v)", topic, err, want)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if !r.Attrs.IsControl() {
				byPart[r.Partition] = append(byPart[r.Partition], r)
			}
			if r.Offset >= end-1 {
				delete(want, r.Partition)
			}
		})
	}
	var out []*kgo.Record
	for p := int32(0); len(byPart) > 0; p++ {
		out = append(out, byPart[p]...)
		delete(byPart, p)
	}
	return out, nil
}
