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

// A command whose events are refused deterministically, and whose dead
// letter is refused too, can still be answered: the reply topic works. It
// must not be skipped without its answer.
func TestIsolatedCommandAnsweredWhenOnlyTheDeadLetterIsRefused(t *testing.T) {
	t.Parallel()
	h, _, p := workerWithAccount(t, "iso")
	fh := h.Cluster.Fault(
		tooLarge(h, "events", p),
		tooLarge(h, "commands-dlq"),
	)
	defer fh.Remove()
	rep, err := sendWithin(h, cmd("account", "iso", "Deposit", `{"amount":5}`), 20*time.Second)
	if err != nil {
		t.Fatalf("the refused command was never answered although its reply could be written: %v", err)
	}
	wantOutputRefused(t, rep)
}

// A command whose events are refused deterministically, and whose reply
// (on the default reply topic) is refused too, can still be dead-lettered:
// it must not be skipped without a trace.
func TestIsolatedCommandDeadLetteredWhenOnlyTheReplyIsRefused(t *testing.T) {
	t.Parallel()
	h, w, p := workerWithAccount(t, "iso")
	fh := h.Cluster.Fault(
		tooLarge(h, "events", p),
		tooLarge(h, "command_reply"),
	)
	sendAsync(h, cmd("account", "iso", "Deposit", `{"amount":5}`), 5*time.Second) // its reply cannot be written
	pollUntil(t, "the refused command to be settled", 30*time.Second, func() bool { return w.Stats().IsolatedDeadLetters == 1 })
	fh.Remove()
	var found bool
	for _, d := range deadLettersOf(h, "iso") {
		if header(d, wire.HeaderDLQOffset) != "" {
			found = true
		}
	}
	if !found {
		t.Fatal("the refused command is neither answered nor in the dead-letter topic: lost without a trace")
	}
	wantStatus(t, h.Send(cmd("account", "iso", "Deposit", `{"amount":2}`)), wire.StatusAccepted, 2)
	wantContiguous(t, h)
}

// A TxnOffsetCommit that fails with an error franz-go does not treat as
// abortable makes End return that error without committing. The
// transaction was aborted and the session rewound: the worker must go on
// (the batch comes again), not stop.
func TestTxnOffsetCommitFailureDoesNotStopTheWorker(t *testing.T) {
	t.Parallel()
	h, w := embeddedWorker(t)
	openAccountID(t, h, "oc")
	var hits atomic.Int32
	h.Cluster.ControlKey(int16(kmsg.TxnOffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !hits.CompareAndSwap(0, 1) {
			return nil, nil, false
		}
		r := req.(*kmsg.TxnOffsetCommitRequest)
		resp := r.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewTxnOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.RequestTimedOut.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	rep, err := sendWithin(h, cmd("account", "oc", "Deposit", `{"amount":5}`), 20*time.Second)
	if hits.Load() == 0 {
		t.Fatal("the TxnOffsetCommit control never ran")
	}
	if werr := w.Err(); werr != nil {
		t.Fatalf("worker stopped on a failed offset commit: %v", werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, rep, wire.StatusAccepted, 2)
	wantStatus(t, h.Send(cmd("account", "oc", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	wantContiguous(t, h)
}

// An EndTxn commit answered with an error the broker did NOT apply: the
// transaction stays open on the broker (franz-go cannot re-send it) until
// it times out. The command must still be applied exactly once and
// answered, and the worker must go on.
func TestEndTxnErrorNotAppliedLosesNothing(t *testing.T) {
	t.Parallel()
	h, w := embeddedWorker(t, shortTransactions)
	openAccountID(t, h, "na")
	hits := failFirstEndTxnCommit(h, kerr.UnknownServerError)
	dep := cmd("account", "na", "Deposit", `{"amount":5}`)
	dep.ID = "na-dep"
	rep, err := sendWithin(h, dep, 25*time.Second)
	if err != nil {
		t.Fatalf("no answer (worker err %v): %v", w.Err(), err)
	}
	if rep.Status != wire.StatusAccepted || rep.Version != 2 {
		t.Fatalf("reply %+v, want ACCEPTED at 2", rep)
	}
	if hits.Load() == 0 {
		t.Fatal("the EndTxn control never ran")
	}
	wantStatus(t, h.Send(cmd("account", "na", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	if werr := w.Err(); werr != nil {
		t.Fatalf("worker stopped: %v", werr)
	}
	wantContiguous(t, h)
}

// A foreign producer's transaction left open on a changelog partition pins
// its last stable offset; the owner's later commits lie past it. A worker
// that restores that partition must not take the stable offset for the end
// of what was committed: it would act on a state older than the changelog
// (a second event at a version that exists).
func TestRestoreWithOpenForeignTxnDoesNotMissLaterCommits(t *testing.T) {
	t.Parallel()
	h, w, p := workerWithAccount(t, "ft")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	foreign := openForeignTxn(ctx, t, h, "foreign", p)
	// The owner commits past the open transaction.
	wantStatus(t, h.Send(cmd("account", "ft", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	// A worker with a fresh state directory restores the partition.
	w1 := h.StartProcessor("w1", "")
	r := <-sendAsync(h, cmd("account", "ft", "Deposit", `{"amount":1}`), 8*time.Second)
	if r.err != nil {
		t.Fatalf("the partition did not answer while a foreign transaction stays open: %v", r.err)
	}
	if r.rep.Status == wire.StatusAccepted && r.rep.Version == 2 {
		t.Fatalf("restored a state older than the changelog: deposit answered %+v (version 2 already exists)", r.rep)
	}
	wantStatus(t, r.rep, wire.StatusAccepted, 3)
	_ = foreign.EndTransaction(ctx, kgo.TryAbort)
	_ = w1
	wantContiguous(t, h)
}

// Two commands refused deterministically, on two partitions, in one batch:
// each is isolated, answered and dead-lettered, and the rest goes on.
func TestTwoPoisonRecordsOnTwoPartitions(t *testing.T) {
	t.Parallel()
	h, w := embeddedWorker(t, func(c *topology.Config) { c.CommitInterval = 300 * time.Millisecond })
	ids := idsPerPartition("tp")
	parts := []int32{0, 1, 2}
	for _, q := range parts {
		openAccountID(t, h, ids[q])
	}
	bad, good := parts[:2], parts[2]
	fh := h.Cluster.Fault(tooLarge(h, "events", bad...))
	defer fh.Remove()
	var res []<-chan sendResult
	for _, q := range parts {
		res = append(res, sendAsync(h, cmd("account", ids[q], "Deposit", `{"amount":5}`), 30*time.Second))
	}
	var refused, accepted int
	for _, rc := range res {
		r := <-rc
		if r.err != nil {
			t.Fatalf("a command was not answered: %v (stats %+v)", r.err, w.Stats())
		}
		switch {
		case r.rep.Status == wire.StatusInternalError && r.rep.Code == topology.CodeOutputRefused:
			refused++
		case r.rep.Status == wire.StatusAccepted && r.rep.Version == 2 && r.rep.AggregateID == ids[good]:
			accepted++
		default:
			t.Fatalf("unexpected reply %+v", r.rep)
		}
	}
	t.Logf("stats %+v", w.Stats())
	if refused != 2 || accepted != 1 {
		t.Fatalf("%d refused, %d accepted; want 2 and 1", refused, accepted)
	}
	fh.Remove()
	for _, q := range bad {
		wantStatus(t, h.Send(cmd("account", ids[q], "Deposit", `{"amount":2}`)), wire.StatusAccepted, 2)
	}
	wantContiguous(t, h)
}

// A batch that keeps aborting for a transient reason enters isolation; once
// the failure goes away, the commands are applied once and isolation ends
// (commands are batched again: no more records re-run alone).
func TestIsolationEndsWhenTheFailureWasTransient(t *testing.T) {
	t.Parallel()
	h, w := embeddedWorker(t, func(c *topology.Config) { c.CommitInterval = 300 * time.Millisecond })
	p := topology.PartitionFor([]byte("tr0"), partitions)
	ids := []string{"tr0"}
	for i := 1; len(ids) < 3; i++ {
		if id := fmt.Sprintf("tr%d", i); topology.PartitionFor([]byte(id), partitions) == p {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		openAccountID(t, h, id)
	}
	// Not in the deterministic list: treated as transient.
	h.Cluster.Fault(refuseProduce(h, "events", kerr.PolicyViolation, 5, p))
	var res []<-chan sendResult
	for _, id := range ids {
		res = append(res, sendAsync(h, cmd("account", id, "Deposit", `{"amount":5}`), 20*time.Second))
	}
	for i, rc := range res {
		r := <-rc
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.rep.Status != wire.StatusAccepted || r.rep.Version != 2 {
			t.Fatalf("deposit to %s answered %+v", ids[i], r.rep)
		}
	}
	pollUntil(t, "the deposits' commit to be counted", 10*time.Second, func() bool { return w.Stats().ConsecutiveAborts == 0 })
	// The test means something only if the transient failure happened and
	// isolation was entered: five refused produces make two aborts of the
	// whole batch for the same reason, then records re-run alone.
	before := w.Stats().Isolated
	if s := w.Stats(); s.Aborted < 2 || before == 0 {
		t.Fatalf("the transient failure did not lead to isolation (aborted %d, isolated %d): %+v", s.Aborted, before, s)
	}
	for i := range 3 {
		wantStatus(t, h.Send(cmd("account", ids[0], "Deposit", `{"amount":1}`)), wire.StatusAccepted, int64(3+i))
	}
	if s := w.Stats(); s.Isolated != before || s.IsolatedDeadLetters != 0 {
		t.Fatalf("still isolating after the failure went away: %+v (isolated before %d)", s, before)
	}
	wantContiguous(t, h)
}

// A foreign transaction left open on a changelog partition pins its stable
// offset. An abort of a batch of that partition makes it suspect until the
// outcome of our own transaction is known: that outcome is in the log (its
// marker), so the partition must not wait for the foreign transaction.
func TestSuspectPartitionDoesNotWaitForAForeignOpenTxn(t *testing.T) {
	t.Parallel()
	h, w, p := workerWithAccount(t, "sf")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	foreign := openForeignTxn(ctx, t, h, "foreign-sf", p)
	// One transient refusal: the batch aborts once, its partition is suspect.
	h.Cluster.Fault(refuseProduce(h, "events", kerr.PolicyViolation, 1, p))
	rep, err := sendWithin(h, cmd("account", "sf", "Deposit", `{"amount":5}`), 15*time.Second)
	if err != nil {
		t.Fatalf("the partition stays blocked while a foreign transaction is open on its changelog (stats %+v): %v", w.Stats(), err)
	}
	wantStatus(t, rep, wire.StatusAccepted, 2)
	if s := w.Stats(); s.Aborted == 0 {
		t.Fatalf("the fault never aborted a batch: %+v", s)
	}
	wantStatus(t, h.Send(cmd("account", "sf", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	_ = foreign.EndTransaction(ctx, kgo.TryAbort)
	wantContiguous(t, h)
}

// An EndTxn the broker applies but answers with an error, for a batch on
// several partitions (events on two, only a rejection on a third): every
// command is answered, every effect happens once.
func TestUnconfirmedCommitOnSeveralPartitions(t *testing.T) {
	t.Parallel()
	h, w := embeddedWorker(t, func(c *topology.Config) { c.CommitInterval = 300 * time.Millisecond })
	ids := idsPerPartition("um")
	parts := []int32{0, 1, 2}
	for _, q := range parts[:2] {
		openAccountID(t, h, ids[q])
	}
	hits := unconfirmCommits(t, h, true, nil)
	var res []<-chan sendResult
	for i, q := range parts {
		c := cmd("account", ids[q], "Deposit", `{"amount":5}`)
		if i == 2 {
			c = cmd("account", ids[q], "Withdraw", `{"amount":5}`) // never opened: rejected, no snapshot
		}
		c.ID = "um-" + ids[q]
		res = append(res, sendAsync(h, c, 20*time.Second))
	}
	for i, rc := range res {
		r, id := <-rc, ids[parts[i]]
		if r.err != nil {
			t.Fatalf("%s not answered: %v (stats %+v)", id, r.err, w.Stats())
		}
		if i != 2 {
			wantStatus(t, r.rep, wire.StatusAccepted, 2)
		} else if r.rep.Status != wire.StatusRejected {
			t.Fatalf("withdraw from a missing account answered %+v", r.rep)
		}
	}
	if hits.Load() == 0 {
		t.Fatal("the EndTxn control never ran")
	}
	for _, q := range parts[:2] {
		wantStatus(t, h.Send(cmd("account", ids[q], "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	}
	wantContiguous(t, h)
}

// An EndTxn the broker applies but answers with an error, followed at once
// by a rebalance that moves partitions to another worker and back: no
// version twice, every command answered.
func TestUnconfirmedCommitThenRebalanceAwayAndBack(t *testing.T) {
	t.Parallel()
	h, w0 := embeddedWorker(t)
	openAccountID(t, h, "ur")
	uncertain := make(chan struct{})
	unconfirmCommits(t, h, true, func() { close(uncertain) })
	dep := cmd("account", "ur", "Deposit", `{"amount":5}`)
	dep.ID = "ur-dep"
	res := sendAsync(h, dep, 40*time.Second)
	<-uncertain
	w1 := h.StartProcessor("w1", "")
	pollUntil(t, "w1 to take partitions", 30*time.Second, func() bool { return len(w1.Assigned()) > 0 })
	if err := w1.Stop(); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "w0 to own every partition again", 30*time.Second, func() bool { return len(w0.Assigned()) == partitions })
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.rep.Status != wire.StatusAccepted || r.rep.Version != 2 {
		t.Fatalf("deposit answered %+v", r.rep)
	}
	wantStatus(t, h.Send(cmd("account", "ur", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	if w0.Err() != nil {
		t.Fatal(w0.Err())
	}
	wantContiguous(t, h)
}

// A restore that is still running when a rebalance takes its partition away
// (and another worker restores and uses it, then gives it back): no state
// older than the changelog is used by anyone, every command is answered.
func TestRestoreInterruptedByARebalance(t *testing.T) {
	t.Parallel()
	h, ids := stoppedPerPartition(t, "ri")
	delayed := delayFirstChangelogFetches(h, 1, 3*time.Second)
	a := h.StartProcessor("a", "")
	pollUntil(t, "the slow restore to start", 30*time.Second, func() bool { return delayed.Load() == 1 })
	b := h.StartProcessor("b", "")
	for q := range int32(partitions) {
		wantStatus(t, h.Send(cmd("account", ids[q], "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	for q := range int32(partitions) {
		wantStatus(t, h.Send(cmd("account", ids[q], "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	}
	if a.Err() != nil {
		t.Fatal(a.Err())
	}
	wantContiguous(t, h)
}

// Commands deferred (their partitions rewound and paused while the stores
// are restored) when a rebalance moves partitions away and back: each is
// answered once, none is skipped, none takes effect twice.
func TestDeferredRecordsAcrossARebalance(t *testing.T) {
	t.Parallel()
	h, ids := stoppedPerPartition(t, "dr")
	delayed := delayFirstChangelogFetches(h, 2, 2*time.Second)
	a := h.StartProcessor("a", "")
	pollUntil(t, "the slow restore to start", 30*time.Second, func() bool { return delayed.Load() >= 1 })
	errs := make(chan error, 3*partitions)
	for q := range int32(partitions) {
		go func(id string) {
			for i := range 3 {
				ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
				rep, err := h.Client().Send(ctx, cmd("account", id, "Deposit", `{"amount":1}`))
				cancel()
				if err == nil && (rep.Status != wire.StatusAccepted || rep.Version != int64(2+i)) {
					err = fmt.Errorf("deposit %d to %s answered %+v", i, id, rep)
				}
				errs <- err
			}
		}(ids[q])
	}
	b := h.StartProcessor("b", "")
	pollUntil(t, "b to take partitions", 30*time.Second, func() bool { return len(b.Assigned()) > 0 })
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	for range 3 * partitions {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if a.Err() != nil {
		t.Fatal(a.Err())
	}
	versions := wantContiguous(t, h)
	for q := range int32(partitions) {
		if got := versions["account/"+ids[q]]; len(got) != 4 {
			t.Fatalf("%s: versions %v, want 1..4", ids[q], got)
		}
	}
}

// A partition made suspect (here by a store write that failed after its
// commit) on a worker that then gets no more commands for it: the worker
// must become ready again by itself, not stay unready (a readiness probe
// failing for ever) until the next command happens to come.
func TestIdleSuspectPartitionBecomesReadyAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var fail atomic.Bool
	w := h.StartProcessor("w0", "", failStoreWriteWhenSet(&fail))
	openAccountID(t, h, "is")
	pollUntil(t, "the worker to be ready", 30*time.Second, w.Ready)
	fail.Store(true)
	wantStatus(t, h.Send(cmd("account", "is", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	pollUntil(t, "the failing store write", 30*time.Second, func() bool { return !fail.Load() })
	pollUntil(t, "the idle worker to be ready again", 10*time.Second, w.Ready)
	wantStatus(t, h.Send(cmd("account", "is", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	wantContiguous(t, h)
}
