package topology_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// Helpers shared by the tests of the processing loop's edges (aborts,
// isolation, restores, unconfirmed commits). Each one either sets a fault
// up or fails the test; none of them decides whether a test passes.

// pollUntil polls cond until it holds or the deadline passes.
func pollUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// harnessWith is a harness whose registry holds the examples and h, with
// the account schemas.
func harnessWith(t *testing.T, h aggregates.Handler) *topologytest.Harness {
	t.Helper()
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	set, err := schemas.LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(h, set); err != nil {
		t.Fatal(err)
	}
	return topologytest.New(t, reg, partitions)
}

// openAccountID opens the account id (USD) and wants it ACCEPTED at 1.
func openAccountID(t *testing.T, h *topologytest.Harness, id string) {
	t.Helper()
	wantStatus(t, h.Send(cmd("account", id, "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
}

// openPerPartition opens one account on each partition (idsPerPartition)
// and returns their ids, indexed by partition.
func openPerPartition(t *testing.T, h *topologytest.Harness, prefix string) []string {
	t.Helper()
	ids := idsPerPartition(prefix)
	for _, id := range ids {
		openAccountID(t, h, id)
	}
	return ids
}

// otherPartitionID returns base, lengthened until it hashes to another
// partition than id.
func otherPartitionID(base, id string) string {
	for topology.PartitionFor([]byte(base), partitions) == topology.PartitionFor([]byte(id), partitions) {
		base += "x"
	}
	return base
}

// wantContiguous decodes the events topic, fails the test unless every
// aggregate's versions are 1..n in log order, and returns them.
func wantContiguous(t *testing.T, h *topologytest.Harness) map[string][]int64 {
	t.Helper()
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
	return versions
}

// sendResult is what a Send started by sendAsync returned.
type sendResult struct {
	rep wire.Reply
	err error
}

// sendWithin sends c through the harness's client, giving up after within.
func sendWithin(h *topologytest.Harness, c client.Command, within time.Duration) (wire.Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return h.Client().Send(ctx, c)
}

// sendAsync sends c in a goroutine (sendWithin) and hands its result over
// on the returned channel.
func sendAsync(h *topologytest.Harness, c client.Command, within time.Duration) <-chan sendResult {
	res := make(chan sendResult, 1)
	go func() {
		rep, err := sendWithin(h, c, within)
		res <- sendResult{rep, err}
	}()
	return res
}

// refuseProduce makes the broker refuse count produce requests (-1: until
// Remove) to the topology's topic, on the given partitions (none: all),
// with err.
func refuseProduce(h *topologytest.Harness, topic string, err *kerr.Error, count int, partitions ...int32) kfake.Fault {
	return kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: h.Topic(topic), Partitions: partitions, Err: err, Count: count}
}

// manualProducer is a client of h's cluster (with h's client options, then
// opts) that produces each record to the partition it names. The caller
// closes it.
func manualProducer(t *testing.T, h *topologytest.Harness, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(h.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, h.ClientOpts...), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// tooLarge refuses every produce request to the topology's topic as too
// large (refuseProduce until Remove), on the given partitions (none: all):
// a deterministic refusal.
func tooLarge(h *topologytest.Harness, topic string, partitions ...int32) kfake.Fault {
	return refuseProduce(h, topic, kerr.MessageTooLarge, -1, partitions...)
}

// txnClient is a transactional client with id (manual partitions), closed
// when the test ends.
func txnClient(t *testing.T, h *topologytest.Harness, id string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.Brokers...), kgo.TransactionalID(id),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produceJunk writes a record that is not a snapshot, with key, to
// partition p of the snapshots changelog (in cl's open transaction, if any).
func produceJunk(ctx context.Context, t *testing.T, h *topologytest.Harness, cl *kgo.Client, p int32, key string) {
	t.Helper()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: h.Topic("snapshots-changelog"), Partition: p, Key: []byte(key), Value: []byte("junk")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// openForeignTxn begins a transaction of a foreign producer txnID and
// leaves a junk record of it open on partition p of the snapshots
// changelog, pinning its last stable offset. The transaction is aborted
// when the test ends.
func openForeignTxn(ctx context.Context, t *testing.T, h *topologytest.Harness, txnID string, p int32) *kgo.Client {
	t.Helper()
	foreign := txnClient(t, h, txnID)
	if err := foreign.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceJunk(ctx, t, h, foreign, p, "account/foreign")
	t.Cleanup(func() { _ = foreign.EndTransaction(context.Background(), kgo.TryAbort) })
	return foreign
}

// delayChangelogFetch sleeps (outside the broker's control loop, which
// goes on) for what delay returns for each topic of a Fetch request that
// names the snapshots changelog (by name or topic id). Every request is
// then handled as usual.
func delayChangelogFetch(h *topologytest.Harness, delay func(kmsg.FetchRequestTopic) time.Duration) {
	changelog := h.Topic("snapshots-changelog")
	id := h.Cluster.TopicInfo(changelog).TopicID
	h.Cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		h.Cluster.KeepControl()
		for _, rt := range req.(*kmsg.FetchRequest).Topics {
			if rt.Topic != changelog && rt.TopicID != id {
				continue
			}
			if d := delay(rt); d > 0 {
				h.Cluster.SleepControl(func() { time.Sleep(d) })
			}
		}
		return nil, nil, false
	})
}

// unconfirmCommits makes committing EndTxn requests applied but unconfirmed:
// each is forwarded to the broker (which applies it), then answered
// UNKNOWN_SERVER_ERROR. With once, only the first is; forwarded (if not nil)
// runs after each forward. It returns the count of requests so answered. A
// forward that fails fails the test.
func unconfirmCommits(t *testing.T, h *topologytest.Harness, once bool, forwarded func()) *atomic.Int32 {
	t.Helper()
	fwd, err := kgo.NewClient(kgo.SeedBrokers(h.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fwd.Close)
	var forwarding, hits atomic.Int32
	h.Cluster.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if forwarding.Load() == 1 {
			return nil, nil, false // the forwarded copy: let the broker apply it
		}
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit || (once && hits.Load() > 0) {
			return nil, nil, false
		}
		hits.Add(1)
		forwarding.Store(1)
		var ferr error
		h.Cluster.SleepControl(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cp := *end
			resp, err := cp.RequestWith(ctx, fwd)
			if err == nil {
				err = kerr.ErrorForCode(resp.ErrorCode)
			}
			ferr = err
		})
		forwarding.Store(0)
		if ferr != nil {
			t.Errorf("forwarding EndTxn: %v", ferr)
		}
		if forwarded != nil {
			forwarded()
		}
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.UnknownServerError.Code
		return resp, nil, true
	})
	return &hits
}

// failFirstEndTxnCommit makes the broker answer the next committing EndTxn
// request with code without applying it (the transaction stays open until
// it times out). kfake drops a control once it has handled a request, so
// only that one is. It returns the count of requests so answered (0 or 1).
func failFirstEndTxnCommit(h *topologytest.Harness, code *kerr.Error) *atomic.Int32 {
	var hits atomic.Int32
	h.Cluster.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit {
			return nil, nil, false
		}
		hits.Add(1)
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = code.Code
		return resp, nil, true
	})
	return &hits
}

// shortTransactions makes a worker's transactions time out after 7s (its
// session after 6s), so that one left open on the broker ends soon.
func shortTransactions(c *topology.Config) {
	c.TransactionTimeout = 7 * time.Second
	c.SessionTimeout = 6 * time.Second
}

// embeddedWorker is a harness on the embedded broker (its fault hooks are
// used) with one worker, w0, started with a fresh state directory.
func embeddedWorker(t *testing.T, mutate ...func(*topology.Config)) (*topologytest.Harness, *topologytest.Running) {
	t.Helper()
	h := newHarness(t)
	h.RequireEmbedded()
	return h, h.StartProcessor("w0", "", mutate...)
}

// workerWithAccount is embeddedWorker with the account id opened; p is
// the partition of id.
func workerWithAccount(t *testing.T, id string) (h *topologytest.Harness, w *topologytest.Running, p int32) {
	t.Helper()
	h, w = embeddedWorker(t)
	openAccountID(t, h, id)
	return h, w, topology.PartitionFor([]byte(id), partitions)
}

// failStoreWriteWhenSet makes the worker's store write fail once each
// time fail is set (the write clears it): the failure comes after the
// commit, so the store falls behind Kafka.
func failStoreWriteWhenSet(fail *atomic.Bool) func(*topology.Config) {
	return func(c *topology.Config) {
		topology.FailStoreWrite(c, func(int32) error {
			if fail.CompareAndSwap(true, false) {
				return errors.New("injected write failure")
			}
			return nil
		})
	}
}

// deadLettersOf returns the records of the commands' dead-letter topic
// with key.
func deadLettersOf(h *topologytest.Harness, key string) []*kgo.Record {
	var out []*kgo.Record
	for _, d := range h.ReadTopic("commands-dlq") {
		if string(d.Key) == key {
			out = append(out, d)
		}
	}
	return out
}

// stoppedPerPartition is a harness on the embedded broker where a worker
// opened one account on each partition (openPerPartition) and stopped: the
// next worker started with a fresh state directory restores every store.
func stoppedPerPartition(t *testing.T, prefix string) (*topologytest.Harness, []string) {
	t.Helper()
	h, w := embeddedWorker(t)
	ids := openPerPartition(t, h, prefix)
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	return h, ids
}

// delayFirstChangelogFetches delays the first n topics of Fetch requests
// naming the snapshots changelog by d each (delayChangelogFetch). It
// returns the count so delayed (at most n).
func delayFirstChangelogFetches(h *topologytest.Harness, n int32, d time.Duration) *atomic.Int32 {
	var delayed atomic.Int32
	delayChangelogFetch(h, func(kmsg.FetchRequestTopic) time.Duration {
		for {
			k := delayed.Load()
			if k >= n {
				return 0
			}
			if delayed.CompareAndSwap(k, k+1) {
				return d
			}
		}
	})
	return &delayed
}

// wantOutputRefused fails the test unless rep is INTERNAL_ERROR
// output_refused, the answer to a command whose output the broker refuses.
func wantOutputRefused(t *testing.T, rep wire.Reply) {
	t.Helper()
	if rep.Status != wire.StatusInternalError || rep.Code != topology.CodeOutputRefused {
		t.Fatalf("refused command answered %+v, want INTERNAL_ERROR %s", rep, topology.CodeOutputRefused)
	}
}
