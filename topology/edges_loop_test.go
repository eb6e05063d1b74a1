package topology_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// An EndTxn the broker applies but answers with an error leaves the commit
// unconfirmed: franz-go's End reports "not committed" and the batch comes
// again. The stores and caches of the batch are suspect and must be caught
// up from the changelog first, so the retried command is a duplicate, never
// a second event at the same version.
func TestUnconfirmedCommitCatchesUpBeforeReuse(t *testing.T) {
	t.Parallel()
	h, w := embeddedWorker(t)
	openAccountID(t, h, "u")
	hits := unconfirmCommits(t, h, false, nil) // every commit
	dep := cmd("account", "u", "Deposit", `{"amount":5}`)
	dep.ID = "u-dep"
	wantStatus(t, h.Send(dep), wire.StatusAccepted, 2)
	if hits.Load() == 0 {
		t.Fatal("the EndTxn control never ran")
	}
	// The batch comes again: it must be answered as a duplicate.
	pollUntil(t, "the retried batch to commit", 30*time.Second, func() bool {
		s := w.Stats()
		return s.Unconfirmed > 0 && s.Duplicates > 0
	})
	wantStatus(t, h.Send(cmd("account", "u", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	versions := wantContiguous(t, h)
	if got := versions["account/u"]; len(got) != 3 {
		t.Fatalf("versions of u %v, want [1 2 3]", got)
	}
}

// A zombie's aborted transaction whose records sit below the changelog's
// last stable offset while its abort marker lies above it (another producer
// has a transaction open in between): a restore must end at the stable
// offset anyway, not wait for records it will never be handed.
func TestRestoreEndsPastAbortedRecordsBelowTheStableOffset(t *testing.T) {
	t.Parallel()
	h, w := embeddedWorker(t)
	openAccountID(t, h, "rz")
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	p := topology.PartitionFor([]byte("rz"), partitions)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	zombie, owner := txnClient(t, h, "zombie"), txnClient(t, h, "open-owner")
	for _, c := range []*kgo.Client{zombie, owner} {
		if err := c.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
	}
	produceJunk(ctx, t, h, zombie, p, "account/zombie")
	produceJunk(ctx, t, h, owner, p, "account/open")
	if err := zombie.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = owner.EndTransaction(context.Background(), kgo.TryAbort) }()

	// A fresh state directory: the whole changelog partition is restored.
	h.StartProcessor("w1", "")
	wantStatus(t, h.Send(cmd("account", "rz", "Deposit", `{"amount":3}`)), wire.StatusAccepted, 2)
	for i := range 16 {
		id := fmt.Sprintf("other%d", i)
		if topology.PartitionFor([]byte(id), partitions) != p {
			openAccountID(t, h, id)
			break
		}
	}
	// The test harness's own read_committed reader ends too.
	if err := owner.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	wantContiguous(t, h)
}

// Consecutive aborts back off (no hot loop), and a command whose output the
// broker refuses deterministically is isolated: re-run alone, then answered
// and dead-lettered alone, while every other command goes on.
func TestDeterministicProduceFailureIsIsolated(t *testing.T) {
	t.Parallel()
	h, w, p := workerWithAccount(t, "iso")
	other := otherPartitionID("ok", "iso")
	openAccountID(t, h, other)

	// Every event produced to the aggregate's partition is refused as too
	// large: the deposit can never be written.
	fh := h.Cluster.Fault(tooLarge(h, "events", p))
	res := sendAsync(h, cmd("account", "iso", "Deposit", `{"amount":5}`), 60*time.Second)
	// Other partitions keep answering meanwhile.
	wantStatus(t, h.Send(cmd("account", other, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantOutputRefused(t, r.rep)
	fh.Remove()
	// Stats count after the commit, which may be just after the reply shows.
	pollUntil(t, "the isolated dead letter to be counted", 30*time.Second, func() bool { return w.Stats().IsolatedDeadLetters == 1 })
	s := w.Stats()
	if s.Aborted > 10 {
		t.Fatalf("%d aborted transactions for one refused command: a hot loop", s.Aborted)
	}
	wantStatus(t, h.Send(cmd("account", "iso", "Deposit", `{"amount":2}`)), wire.StatusAccepted, 2)
	dls := deadLettersOf(h, "iso")
	for _, d := range dls {
		if string(d.Value) != `{"amount":5}` || header(d, wire.HeaderDLQOffset) == "" || header(d, wire.HeaderDLQError) == "" {
			t.Fatalf("dead letter %v: want the value, the original offset and the error", d)
		}
	}
	if len(dls) == 0 {
		t.Fatal("the refused command is not in the dead-letter topic")
	}
	wantContiguous(t, h)
}

// When not even the dead letter can be written, the command's copy loses
// its value, and at last the command is skipped with only its offset: never
// a loop, and the other partitions go on.
func TestRefusedDeadLetterEndsInASkip(t *testing.T) {
	t.Parallel()
	h, w, p := workerWithAccount(t, "iso")
	fh := h.Cluster.Fault(
		tooLarge(h, "events", p),
		tooLarge(h, "commands-dlq"),
		tooLarge(h, "command_reply"),
	)
	// No reply can be written: this Send only times out.
	sendAsync(h, cmd("account", "iso", "Deposit", `{"amount":5}`), 5*time.Second)
	pollUntil(t, "the refused command to be skipped", 60*time.Second, func() bool { return w.Stats().IsolatedDeadLetters == 1 })
	fh.Remove()
	if s := w.Stats(); s.Aborted > 12 {
		t.Fatalf("%d aborted transactions for one refused command: a hot loop", s.Aborted)
	}
	wantStatus(t, h.Send(cmd("account", "iso", "Deposit", `{"amount":2}`)), wire.StatusAccepted, 2)
	wantContiguous(t, h)
}

// When the dead letter with its value is refused too, the isolated command
// is parked without its value: a pointer to its offset, marked as such
// (kcqrs_dlq_value_omitted), as every value-less dead letter is.
func TestRefusedDeadLetterValueBecomesAPointer(t *testing.T) {
	t.Parallel()
	h, w, p := workerWithAccount(t, "ptr")
	fh := h.Cluster.Fault(
		tooLarge(h, "events", p),
		refuseProduce(h, "commands-dlq", kerr.MessageTooLarge, 1),
	)
	r, err := sendWithin(h, cmd("account", "ptr", "Deposit", `{"amount":5}`), 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wantOutputRefused(t, r)
	fh.Remove()
	pollUntil(t, "the isolated dead letter to be counted", 30*time.Second, func() bool { return w.Stats().IsolatedDeadLetters == 1 })
	dls := deadLettersOf(h, "ptr")
	for _, d := range dls {
		if d.Value != nil || header(d, wire.HeaderDLQValueOmitted) == "" || header(d, wire.HeaderDLQOffset) == "" || header(d, wire.HeaderDLQError) == "" {
			t.Fatalf("dead letter %v: want no value, kcqrs_dlq_value_omitted, the original offset and the error", d)
		}
	}
	if len(dls) == 0 {
		t.Fatal("the refused command is not in the dead-letter topic")
	}
	wantContiguous(t, h)
}

// A store write that fails after the commit leaves the store behind Kafka:
// the partition is suspect and caught up from the changelog before its next
// use, so no version is lost or repeated.
func TestFailedStoreWriteIsCaughtUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var fail atomic.Bool
	w := h.StartProcessor("w0", "", func(c *topology.Config) {
		c.StateCacheEntries = -1 // every load reads the store
	}, failStoreWriteWhenSet(&fail))
	openAccountID(t, h, "sw")
	fail.Store(true)
	wantStatus(t, h.Send(cmd("account", "sw", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	// The store is written just after the commit the reply shows.
	pollUntil(t, "the failing store write", 30*time.Second, func() bool { return !fail.Load() })
	wantStatus(t, h.Send(cmd("account", "sw", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
	if w.Err() != nil {
		t.Fatal(w.Err())
	}
}

// A changelog deleted and recreated that already grew past the store's
// checkpoint is another log: the store notices by the topic id and rebuilds.
func TestRecreatedChangelogPastCheckpointIsRebuilt(t *testing.T) {
	t.Parallel()
	h, w := embeddedWorker(t)
	openAccountID(t, h, "rc")
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	p := topology.PartitionFor([]byte("rc"), partitions)
	changelog := h.Topic("snapshots-changelog")
	if err := h.Cluster.DeleteTopic(changelog); err != nil {
		t.Fatal(err)
	}
	if err := h.Cluster.CreateTopic(changelog, partitions, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	// The new changelog grows past the old checkpoint with other records.
	prod, err := kgo.NewClient(kgo.SeedBrokers(h.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for i := range 10 {
		if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: changelog, Partition: p, Key: []byte(fmt.Sprintf("junk/%d", i)), Value: nil}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	again := h.StartProcessor("w0", w.StateDir)
	// The old store knows rc at version 1; the recreated changelog does
	// not: after a rebuild the aggregate starts over.
	openAccountID(t, h, "rc")
	for _, rep := range again.Restores() {
		if rep.Partition == p && rep.Rebuilt {
			return
		}
	}
	t.Fatalf("no rebuild of partition %d: %+v", p, again.Restores())
}

// franz-go's GroupTransactSession skips the revoke callback while its own
// revoked flag is set, and an idle worker never clears it: after losing
// partitions twice it would keep reporting one it no longer owns.
func TestIdleWorkerOwnershipFollowsTheGroup(t *testing.T) {
	t.Parallel()
	idleOwnership(t)
}

// The same with KIP-848 consumer groups (the broker assigns).
func TestIdleWorkerOwnershipFollowsTheGroupKIP848(t *testing.T) {
	t.Parallel()
	idleOwnership(t, func(c *topology.Config) {
		c.SessionClientOpts = append(c.SessionClientOpts, kgo.ServerSideBalancer(), kgo.Balancers(kgo.CooperativeStickyBalancer(), kgo.StickyBalancer()))
	})
}

func idleOwnership(t *testing.T, mutate ...func(*topology.Config)) {
	h := newHarness(t)
	a := h.StartProcessor("a", "", mutate...)
	pollUntil(t, "a to own every partition", 60*time.Second, func() bool { return len(a.Assigned()) == partitions })
	b := h.StartProcessor("b", "", mutate...)
	pollUntil(t, "the partitions to be split", 60*time.Second, func() bool {
		return len(a.Assigned())+len(b.Assigned()) == partitions && len(b.Assigned()) > 0
	})
	c := h.StartProcessor("c", "", mutate...)
	pollUntil(t, "a's view to match the group after two revokes", 60*time.Second, func() bool {
		return len(a.Assigned())+len(b.Assigned())+len(c.Assigned()) == partitions && len(c.Assigned()) > 0
	})
}

// A restore longer than the transaction timeout (the first changelog fetch
// of one partition delayed past it) runs outside any transaction: the worker
// is not fenced, and the other partitions keep answering meanwhile.
func TestSlowRestoreRunsOutsideTheTransaction(t *testing.T) {
	t.Parallel()
	h, ids := stoppedPerPartition(t, "s")
	const slow = int32(0)
	var delayed atomic.Int32
	delayChangelogFetch(h, func(rt kmsg.FetchRequestTopic) time.Duration {
		for _, rp := range rt.Partitions {
			if rp.Partition == slow && delayed.CompareAndSwap(0, 1) {
				return 12 * time.Second // past the 10s transaction timeout
			}
		}
		return 0
	})
	again := h.StartProcessor("w0", "") // a fresh state directory: every store is restored
	res := sendAsync(h, cmd("account", ids[slow], "Deposit", `{"amount":1}`), 60*time.Second)
	pollUntil(t, "the slow fetch to be delayed", 30*time.Second, func() bool { return delayed.Load() == 1 })
	for q := int32(1); q < partitions; q++ {
		wantStatus(t, h.Send(cmd("account", ids[q], "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	}
	select {
	case r := <-res:
		t.Fatalf("the slow partition answered before its restore ended: %+v %v", r.rep, r.err)
	default:
	}
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantStatus(t, r.rep, wire.StatusAccepted, 2)
	if again.Err() != nil {
		t.Fatalf("worker ended: %v", again.Err())
	}
	wantStatus(t, h.Send(cmd("account", ids[slow], "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	wantContiguous(t, h)
}
