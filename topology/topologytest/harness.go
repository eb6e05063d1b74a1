// Package topologytest runs a processor for your aggregates against an
// in-process Kafka-protocol broker, so you can test your aggregate types end
// to end (commands in; events, snapshots and replies out) with no Kafka
// installed. Every harness uses its own broker on a free port and its own
// temporary state directories, so tests may run in parallel.
//
// With KCQRS_TEST_BROKERS set (host:port,...), harnesses use that cluster
// instead, the way franz-go's tests use KGO_SEEDS: each harness then gets
// its own topic names and group (prefixed kcqrs-test-<random>-) and deletes
// its topics when the test ends. The connection's other settings come from
// the same variables as the processor's, prefixed KCQRS_TEST_ (for example
// KCQRS_TEST_SASL_MECHANISM, KCQRS_TEST_TLS_CA). Tests that need the
// embedded broker's fault injection call RequireEmbedded and are skipped.
package topologytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// Harness is a broker plus the processors a test starts on it.
type Harness struct {
	T testing.TB
	// Cluster is the embedded broker; nil against KCQRS_TEST_BROKERS.
	Cluster *kfake.Cluster
	Brokers []string
	// Topics are this harness's topic names (the defaults on the embedded
	// broker; unique ones on an external cluster).
	Topics topology.Topics
	// ClientOpts connect to the cluster (TLS, SASL); the harness's own
	// clients use them and so does Base.
	ClientOpts []kgo.Opt
	// Base is the config every processor starts from (Brokers, Partitions,
	// a quiet logger, and InternalTopics refusing "transfer-replies", the
	// reply topic package saga once named, as the processor binary does);
	// StartProcessor fills InstanceID and StateDir.
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
	return NewWithOptions(t, reg, Options{Partitions: partitions})
}

// Options configure a harness.
type Options struct {
	// Partitions of the topics the first processor creates.
	Partitions int32
	// BrokerOpts are extra options of the embedded broker (TLS, SASL,
	// ACLs). A harness with them always uses the embedded broker.
	BrokerOpts []kfake.Opt
	// ClientOpts connect the harness's clients and processors (TLS, SASL).
	ClientOpts []kgo.Opt
}

// ExternalBrokers returns the brokers of KCQRS_TEST_BROKERS, if set.
func ExternalBrokers() []string {
	var out []string
	for _, b := range strings.Split(os.Getenv("KCQRS_TEST_BROKERS"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// NewWithOptions is New with options.
func NewWithOptions(t testing.TB, reg *topology.Registry, o Options) *Harness {
	t.Helper()
	var logOut io.Writer = io.Discard
	if os.Getenv("KCQRS_TEST_LOG") != "" {
		logOut = os.Stderr
	}
	h := &Harness{
		T: t, Registry: reg, ClientOpts: o.ClientOpts,
		Base: topology.Config{
			Partitions:     o.Partitions,
			CommitInterval: 50 * time.Millisecond,
			InternalTopics: []string{"transfer-replies"},
			Logger:         slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug})),
		},
	}
	if ext := ExternalBrokers(); len(ext) > 0 && len(o.BrokerOpts) == 0 {
		h.useExternal(ext)
	} else {
		c, err := embedded.Start(embedded.Options{Extra: o.BrokerOpts})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		h.Cluster, h.Brokers = c, c.ListenAddrs()
	}
	h.Base.Brokers = h.Brokers
	h.Base.Topics = h.Topics
	h.Base.ClientOpts = append(h.Base.ClientOpts, h.ClientOpts...)
	return h
}

// useExternal points the harness at an external cluster with topic names
// and a group of its own, deleted at the end of the test.
func (h *Harness) useExternal(brokers []string) {
	h.T.Helper()
	var k config.Kafka
	s := config.New("test", config.DefaultPrefix+"TEST_")
	k.Bind(s, nil)
	if err := s.Parse(nil, nil); err != nil {
		h.T.Fatalf("topologytest: KCQRS_TEST_* settings: %v", err)
	}
	opts, err := k.Opts()
	if err != nil {
		h.T.Fatalf("topologytest: KCQRS_TEST_* settings: %v", err)
	}
	h.Brokers = brokers
	h.ClientOpts = append(opts[1:], h.ClientOpts...) // opts[0] are the seeds
	prefix := fmt.Sprintf("kcqrs-test-%x-", rand.Uint64())
	h.Topics = topology.Topics{
		Commands: prefix + "commands", Events: prefix + "events", Changelog: prefix + "snapshots-changelog",
		Replies: prefix + "command_reply", DeadLetters: prefix + "commands-dlq",
	}
	h.Base.Group = prefix + "processor"
	h.T.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var names []string
		for _, s := range h.Topics.Specs() {
			names = append(names, s.Name)
		}
		if _, err := h.Admin().DeleteTopics(ctx, names...); err != nil {
			h.T.Logf("topologytest: deleting the test topics %v: %v", names, err)
		}
	})
}

// RequireEmbedded skips the test when the harness runs against an external
// cluster: it needs the embedded broker (fault injection, topic surgery).
func (h *Harness) RequireEmbedded() {
	h.T.Helper()
	if h.Cluster == nil {
		h.T.Skip("topologytest: needs the embedded broker's fault injection; skipped against KCQRS_TEST_BROKERS")
	}
}

// Topic maps a topic's default name ("events", "commands", ...) to this
// harness's name for it; other names are returned as they are.
func (h *Harness) Topic(name string) string {
	d := topology.Defaults().Topics
	t := h.Topics
	if t.Commands == "" {
		return name
	}
	switch name {
	case d.Commands:
		return t.Commands
	case d.Events:
		return t.Events
	case d.Changelog:
		return t.Changelog
	case d.Replies:
		return t.Replies
	case d.DeadLetters:
		return t.DeadLetters
	case topology.DefaultKeysTopic, topology.DefaultSchemaTopic:
		// Both are per cluster by default; on a shared one, per harness.
		return strings.TrimSuffix(t.Commands, d.Commands) + name
	}
	return name
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
	if cfg.Personal != nil && cfg.Topics.Keys == "" {
		// Each harness its own keys topic on a shared cluster: another
		// test's keys (another master key) would stop this worker's start.
		cfg.Topics.Keys = h.Topic(topology.DefaultKeysTopic)
	}
	if cfg.SchemaTopic == "" {
		cfg.SchemaTopic = h.Topic(topology.DefaultSchemaTopic)
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
		cl, err := client.New(ctx, client.Config{Brokers: h.Brokers, ClientOpts: h.ClientOpts,
			CommandTopic: h.Topic("commands"), ReplyTopic: h.Topic("command_reply")})
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
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(h.Brokers...)}, h.ClientOpts...)...)
	if err != nil {
		h.T.Fatal(err)
	}
	h.T.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// ReadTopic returns every committed record of topic (read_committed), in
// partition then offset order, reading up to the last stable offset of each
// partition at the time of the call. A default topic name means this
// harness's topic of that role (see Topic).
func (h *Harness) ReadTopic(topic string) []*kgo.Record {
	h.T.Helper()
	recs, err := ReadCommitted(context.Background(), h.Brokers, h.Topic(topic), h.ClientOpts...)
	if err != nil {
		h.T.Fatalf("topologytest: read %s: %v", topic, err)
	}
	return recs
}

// ReadCommitted reads every committed record of topic up to its current last
// stable offsets.
func ReadCommitted(ctx context.Context, brokers []string, topic string, opts ...kgo.Opt) ([]*kgo.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	admCl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	ends, err := kadm.NewClient(admCl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	starts, err := kadm.NewClient(admCl).ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	want := map[int32]int64{}
	for p, o := range ends[topic] {
		if o.Err != nil {
			return nil, o.Err
		}
		if o.Offset > 0 {
			want[p] = o.Offset
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	// The end of each partition is decided from the fetch position
	// (logread), never from being handed the record at end-1: under
	// read_committed an aborted transaction's records are not handed
	// over, and its marker may lie at or past the stable offset.
	byPart := map[int32][]*kgo.Record{}
	for p, end := range want {
		from := int64(0)
		if so, ok := starts.Lookup(topic, p); ok && so.Err == nil {
			from = so.Offset
		}
		_, err := logread.Read(ctx, admCl, topic, p, from, end, logread.Options{}, func(r *kgo.Record) error {
			byPart[p] = append(byPart[p], r)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", topic, err)
		}
	}
	var out []*kgo.Record
	for p := int32(0); len(byPart) > 0; p++ {
		out = append(out, byPart[p]...)
		delete(byPart, p)
	}
	return out, nil
}
