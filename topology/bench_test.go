package topology_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// Both benchmarks below run the same workload on the same embedded broker:
// 1000 OpenAccount commands as a warm-up (untimed), then b.N Deposit commands
// spread over those 1000 accounts, produced asynchronously while the consumer
// side runs; the timed region ends when all b.N commands are committed.
// BenchmarkProcessorThroughput runs the real processor; the pass-through is
// the ceiling a raw GroupTransactSession reaches writing three outputs per
// command. Compare them with:
//
//	go test ./topology -run '^$' -bench 'ProcessorThroughput|TransactionalPassThrough' -benchtime 20000x -count 3

const (
	benchAccounts = 1000
	benchDeadline = 120 * time.Second
)

// benchCommand builds a JSON command record as client.Client would, minus the
// correlation id: replies go to the default reply topic.
func benchCommand(id, aggID, typ, json string) *kgo.Record {
	return &kgo.Record{
		Topic: "commands",
		Key:   []byte(aggID),
		Value: []byte(json),
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte(id)},
			{Key: wire.HeaderCommandType, Value: []byte(typ)},
			{Key: wire.HeaderAggregateType, Value: []byte("account")},
			{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeJSON)},
		},
	}
}

// benchProducer produces with franz-go's default partitioner (murmur2 on
// keys, as the processor routes).
func benchProducer(b *testing.B, brokers []string) *kgo.Client {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	return cl
}

// produceAll produces recs asynchronously, then flushes, failing on the
// first produce error.
func produceAll(b *testing.B, cl *kgo.Client, n int, rec func(i int) *kgo.Record) {
	b.Helper()
	var (
		mu       sync.Mutex
		firstErr error
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}
	}
	ctx := context.Background()
	for i := 0; i < n; i++ {
		cl.Produce(ctx, rec(i), promise)
	}
	fctx, cancel := context.WithTimeout(ctx, benchDeadline)
	defer cancel()
	if err := cl.Flush(fctx); err != nil {
		b.Fatalf("flush: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		b.Fatalf("produce: %v", firstErr)
	}
}

// waitFor polls cond until it is true, failing after benchDeadline.
func waitFor(b *testing.B, what string, cond func() (bool, string)) {
	b.Helper()
	deadline := time.Now().Add(benchDeadline)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %v waiting for %s (%s)", benchDeadline, what, state)
		}
		time.Sleep(time.Millisecond)
	}
}

func openAccount(run string) func(i int) *kgo.Record {
	return func(i int) *kgo.Record {
		return benchCommand(fmt.Sprintf("%s-open-%d", run, i), fmt.Sprintf("acct-%d", i), "OpenAccount", `{"owner":"Owner","currency":"EUR"}`)
	}
}

func deposit(run string) func(i int) *kgo.Record {
	return func(i int) *kgo.Record {
		return benchCommand(fmt.Sprintf("%s-dep-%d", run, i), fmt.Sprintf("acct-%d", i%benchAccounts), "Deposit", `{"amount":1}`)
	}
}

var benchRun atomic.Int64

func BenchmarkProcessorThroughput(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark skipped in -short mode")
	}
	reg, err := examples.Registry()
	if err != nil {
		b.Fatal(err)
	}
	h := topologytest.New(b, reg, partitions)
	p := h.StartProcessor("bench", "", func(c *topology.Config) {
		c.MaxBatch = 1000
		c.CommitInterval = 100 * time.Millisecond
	})
	waitFor(b, "the processor to own every partition", func() (bool, string) {
		if err := p.Err(); err != nil {
			b.Fatalf("processor ended: %v", err)
		}
		n := len(p.Assigned())
		return n == partitions, fmt.Sprintf("%d assigned", n)
	})
	run := fmt.Sprintf("run%d", benchRun.Add(1))
	prod := benchProducer(b, h.Brokers)
	waitCommands := func(want int64) {
		waitFor(b, fmt.Sprintf("%d commands", want), func() (bool, string) {
			if err := p.Err(); err != nil {
				b.Fatalf("processor ended: %v", err)
			}
			s := p.Stats()
			return s.Commands >= want, fmt.Sprintf("%+v", s)
		})
	}

	produceAll(b, prod, benchAccounts, openAccount(run))
	waitCommands(benchAccounts)
	before := p.Stats()

	b.ResetTimer()
	start := time.Now()
	produceAll(b, prod, b.N, deposit(run))
	waitCommands(int64(benchAccounts + b.N))
	elapsed := time.Since(start)
	b.StopTimer()

	s := p.Stats()
	if got := s.Replies[wire.StatusAccepted]; got != int64(benchAccounts+b.N) {
		b.Fatalf("%d accepted, want %d: %+v", got, benchAccounts+b.N, s)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "cmds/s")
	tx := s.Transactions - before.Transactions
	if tx > 0 {
		b.ReportMetric(float64(b.N)/float64(tx), "cmds/tx")
	}
}

// benchOutputs are the three topics the pass-through writes, with the
// processor's own topic configs.
var benchTopics = topology.Topics{
	Commands: "commands", Events: "events", Changelog: "snapshots-changelog",
	Replies: "command_reply", DeadLetters: "commands-dlq",
}

func BenchmarkTransactionalPassThrough(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark skipped in -short mode")
	}
	c, err := embedded.Start(embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	brokers := c.ListenAddrs()

	adminCl := benchProducer(b, brokers)
	adm := kadm.NewClient(adminCl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	for _, s := range benchTopics.Specs() {
		resp, err := adm.CreateTopic(ctx, partitions, -1, s.Configs, s.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			cancel()
			b.Fatalf("create %s: %v", s.Name, err)
		}
	}
	cancel()

	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumerGroup("passthrough"),
		kgo.ConsumeTopics(benchTopics.Commands),
		kgo.TransactionalID("passthrough-0"),
		kgo.TransactionTimeout(10*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	if err != nil {
		b.Fatal(err)
	}
	eventVal := bytes.Repeat([]byte("e"), 150)
	replyVal := bytes.Repeat([]byte("r"), 120)
	snapVal := bytes.Repeat([]byte("s"), 200)

	var (
		committed, transactions, aborted atomic.Int64
		loopErr                          atomic.Value
	)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fetches := sess.PollRecords(runCtx, 1000)
			if runCtx.Err() != nil || fetches.IsClientClosed() {
				return
			}
			recs := fetches.Records()
			if len(recs) == 0 {
				continue
			}
			if err := sess.Begin(); err != nil {
				loopErr.Store(fmt.Errorf("begin: %w", err))
				return
			}
			var failed atomic.Bool
			promise := func(_ *kgo.Record, err error) {
				if err != nil {
					failed.Store(true)
				}
			}
			for _, r := range recs {
				var id []byte
				for _, h := range r.Headers {
					if h.Key == wire.HeaderCommandID {
						id = h.Value
					}
				}
				sess.Produce(runCtx, &kgo.Record{Topic: benchTopics.Events, Partition: r.Partition, Key: r.Key, Value: eventVal}, promise)
				sess.Produce(runCtx, &kgo.Record{Topic: benchTopics.Replies, Partition: r.Partition, Key: id, Value: replyVal}, promise)
				sess.Produce(runCtx, &kgo.Record{Topic: benchTopics.Changelog, Partition: r.Partition, Key: r.Key, Value: snapVal}, promise)
			}
			endCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			try := kgo.TryCommit
			if failed.Load() {
				try = kgo.TryAbort
			}
			ok, err := sess.End(endCtx, try)
			cancel()
			transactions.Add(1)
			if ok && !failed.Load() {
				committed.Add(int64(len(recs)))
			} else {
				aborted.Add(1)
			}
			if err != nil {
				loopErr.Store(fmt.Errorf("end: %w", err))
				return
			}
		}
	}()
	b.Cleanup(func() {
		stop()
		<-done
		sess.Close()
	})
	waitCommitted := func(want int64) {
		waitFor(b, fmt.Sprintf("%d records", want), func() (bool, string) {
			if err, _ := loopErr.Load().(error); err != nil {
				b.Fatalf("pass-through: %v", err)
			}
			n := committed.Load()
			return n >= want, fmt.Sprintf("%d committed, %d transactions, %d aborted", n, transactions.Load(), aborted.Load())
		})
	}

	run := fmt.Sprintf("run%d", benchRun.Add(1))
	prod := benchProducer(b, brokers)
	produceAll(b, prod, benchAccounts, openAccount(run))
	waitCommitted(benchAccounts)
	txBefore := transactions.Load()

	b.ResetTimer()
	start := time.Now()
	produceAll(b, prod, b.N, deposit(run))
	waitCommitted(int64(benchAccounts + b.N))
	elapsed := time.Since(start)
	b.StopTimer()

	if n := aborted.Load(); n != 0 {
		b.Logf("%d aborted transactions", n)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "cmds/s")
	if tx := transactions.Load() - txBefore; tx > 0 {
		b.ReportMetric(float64(b.N)/float64(tx), "cmds/tx")
	}
}
