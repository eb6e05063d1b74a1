package topology_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// idsPerPartition returns one account id hashing to each partition.
func idsPerPartition(prefix string) []string {
	ids := make([]string, partitions)
	found := 0
	for i := 0; found < partitions; i++ {
		id := fmt.Sprintf("%s%d", prefix, i)
		p := topology.PartitionFor([]byte(id), partitions)
		if ids[p] == "" {
			ids[p] = id
			found++
		}
	}
	return ids
}

// eventually polls cond for up to 60s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// owners waits until the workers together own every partition, each exactly
// once, and every worker owns at least one.
func waitSplit(t *testing.T, ws ...*topologytest.Running) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d workers to share the partitions", len(ws)), func() bool {
		seen := map[int32]int{}
		for _, w := range ws {
			a := w.Assigned()
			if len(a) == 0 {
				return false
			}
			for _, p := range a {
				seen[p]++
			}
		}
		if len(seen) != partitions {
			return false
		}
		for _, n := range seen {
			if n != 1 {
				return false
			}
		}
		return true
	})
}

// Workers join and leave; partitions move (cooperative-sticky), every
// command is answered once, and a partition that comes back to a worker is
// caught up from the store it kept on disk: only the changelog's tail.
func TestRebalanceKeepsStoresAndRestoresOnlyTheTail(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ids := idsPerPartition("rb")
	w0 := h.StartProcessor("w0", "")
	version := map[string]int64{}
	round := func() {
		t.Helper()
		for _, id := range ids {
			version[id]++
			typ, body := "Deposit", `{"amount":1}`
			if version[id] == 1 {
				typ, body = "OpenAccount", `{"owner":"O","currency":"EUR"}`
			}
			wantStatus(t, h.Send(cmd("account", id, typ, body)), wire.StatusAccepted, version[id])
		}
	}
	round()
	round()
	w1 := h.StartProcessor("w1", "")
	waitSplit(t, w0, w1)
	round()
	w2 := h.StartProcessor("w2", "")
	waitSplit(t, w0, w1, w2)
	round()
	if len(w0.Assigned()) == partitions {
		t.Fatalf("w0 still owns every partition with three workers")
	}
	if err := w1.Stop(); err != nil {
		t.Fatal(err)
	}
	waitSplit(t, w0, w2)
	round()
	if err := w2.Stop(); err != nil {
		t.Fatal(err)
	}
	waitSplit(t, w0)
	round()

	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
	for _, id := range ids {
		if n := len(versions["account/"+id]); int64(n) != version[id] {
			t.Fatalf("%s has %d events, want %d", id, n, version[id])
		}
	}
	// Every partition w0 gave away came back; its catch-ups never re-read
	// what its store already had.
	last := map[int32]int64{}
	regained := 0
	for _, rep := range w0.Restores() {
		if rep.Rebuilt {
			t.Fatalf("w0 rebuilt the store of partition %d", rep.Partition)
		}
		if prev, ok := last[rep.Partition]; ok {
			if rep.From < prev {
				t.Fatalf("partition %d: catch-up from %d, but the store had reached %d (store lost on revocation?)", rep.Partition, rep.From, prev)
			}
			if rep.To > rep.From && rep.From > 0 {
				regained++
			}
		}
		last[rep.Partition] = rep.To
	}
	if regained == 0 {
		t.Fatalf("no partition came back with a tail to read: %+v", w0.Restores())
	}
}

// A worker frozen in the middle of a batch (its open transaction with it)
// and cut off from the group coordinator is replaced; when it wakes up, its
// commit is refused (KIP-447: the group generation moved on), it leaves its
// store untouched, and no command takes effect twice.
func TestFrozenWorkerIsFenced(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded() // fault injection
	ids := idsPerPartition("fz")

	var (
		mu       sync.Mutex
		lastCP   = map[int32]int64{}
		armed    atomic.Bool
		frozen   = make(chan []int32, 1)
		release  = make(chan struct{})
		outcome  = make(chan bool, 1)
		frozenCP = map[int32]int64{}
		inFrozen atomic.Bool
	)
	w0 := h.StartProcessor("w0", "", func(c *topology.Config) {
		c.SessionTimeout = 6 * time.Second
		topology.FreezeBeforeEnd(c, func(parts []int32) {
			if !armed.CompareAndSwap(true, false) {
				return
			}
			inFrozen.Store(true)
			frozen <- parts
			<-release
		})
		topology.AfterEnd(c, func(committed bool, cps map[int32]int64) {
			mu.Lock()
			defer mu.Unlock()
			if inFrozen.CompareAndSwap(true, false) {
				for p, cp := range cps {
					frozenCP[p] = cp
				}
				outcome <- committed
				return
			}
			if committed {
				for p, cp := range cps {
					lastCP[p] = cp
				}
			}
		})
	})
	for _, id := range ids {
		wantStatus(t, h.Send(cmd("account", id, "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	}

	armed.Store(true)
	replies := make(chan wire.Reply, len(ids))
	for _, id := range ids {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r, err := h.Client().Send(ctx, cmd("account", id, "Deposit", `{"amount":7}`))
			if err != nil {
				t.Errorf("deposit %s: %v", id, err)
			}
			replies <- r
		}()
	}
	var frozenParts []int32
	select {
	case frozenParts = <-frozen:
	case <-time.After(60 * time.Second):
		t.Fatal("w0 never froze")
	}

	// Cut w0 off from the coordinator: its heartbeats go unanswered, so
	// the group expels it after its session timeout.
	adm := h.Admin()
	var victim string
	eventually(t, "w0 in the group description", func() bool {
		gs, err := adm.DescribeGroups(context.Background(), "kcqrs-processor")
		if err != nil {
			return false
		}
		for _, m := range gs["kcqrs-processor"].Members {
			if m.ClientID == "kcqrs-processor-w0" {
				victim = m.MemberID
			}
		}
		return victim != ""
	})
	var cutOff atomic.Bool
	cutOff.Store(true)
	h.Cluster.ControlKey(int16(kmsg.Heartbeat), func(req kmsg.Request) (kmsg.Response, error, bool) {
		h.Cluster.KeepControl()
		if hb, ok := req.(*kmsg.HeartbeatRequest); ok && cutOff.Load() && hb.MemberID == victim {
			return nil, nil, true // never answered
		}
		return nil, nil, false
	})

	w1 := h.StartProcessor("w1", "")
	eventually(t, "w1 to own every partition", func() bool { return len(w1.Assigned()) == partitions })
	// w1 answers the deposits w0 froze on.
	got := 0
	deadline := time.After(90 * time.Second)
	for got < len(ids) {
		select {
		case r := <-replies:
			wantStatus(t, r, wire.StatusAccepted, 2)
			got++
		case <-deadline:
			t.Fatalf("only %d of %d deposits answered while w0 is frozen", got, len(ids))
		}
	}

	close(release)
	cutOff.Store(false)
	select {
	case committed := <-outcome:
		if committed {
			t.Fatal("the frozen worker committed its batch after being replaced")
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the frozen worker never ended its transaction")
	}
	mu.Lock()
	for _, p := range frozenParts {
		if frozenCP[p] != lastCP[p] {
			t.Fatalf("partition %d: w0's store checkpoint moved from %d to %d by a batch that did not commit", p, lastCP[p], frozenCP[p])
		}
	}
	mu.Unlock()
	if w0.Stats().Aborted == 0 {
		t.Fatal("w0 counted no aborted transaction")
	}

	// Exactly once: one event per accepted command, one reply per command.
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
	for _, id := range ids {
		if n := len(versions["account/"+id]); n != 2 {
			t.Fatalf("%s has %d events, want 2 (open, deposit)", id, n)
		}
	}
	if n := len(h.ReadTopic("command_reply")); n != 2*len(ids) {
		t.Fatalf("%d replies, want %d", n, 2*len(ids))
	}
}

// With a standby configured, a worker keeps the other worker's partitions
// warm; when that worker dies, taking over reads only what the standby had
// not tailed yet, far less than the partition's changelog.
func TestStandbyTakeoverReadsOnlyTheTail(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	standby := func(c *topology.Config) {
		c.Standbys = 1
		c.StandbyInterval = 100 * time.Millisecond
	}
	w0 := h.StartProcessor("w0", "", standby)
	w1 := h.StartProcessor("w1", "", standby)
	waitSplit(t, w0, w1)
	ids := idsPerPartition("sb")
	for round := range 5 {
		for _, id := range ids {
			typ, body := "Deposit", `{"amount":1}`
			if round == 0 {
				typ, body = "OpenAccount", `{"owner":"O","currency":"EUR"}`
			}
			wantStatus(t, h.Send(cmd("account", id, typ, body)), wire.StatusAccepted, int64(round+1))
		}
	}
	owned1 := w1.Assigned()
	// w0 tails w1's partitions until caught up with the changelog.
	admin := h.Admin()
	eventually(t, "w0's standbys to catch up", func() bool {
		lso, err := admin.ListCommittedOffsets(context.Background(), h.Topic("snapshots-changelog"))
		if err != nil {
			return false
		}
		states := map[int32]topology.PartitionState{}
		for _, s := range w0.PartitionStates() {
			states[s.Partition] = s
		}
		for _, p := range owned1 {
			s, ok := states[p]
			o, _ := lso.Lookup(h.Topic("snapshots-changelog"), p)
			if !ok || s.Role != topology.RoleStandby || !s.Ready || o.Offset == 0 || s.Checkpoint < o.Offset {
				return false
			}
		}
		return true
	})
	if !w0.Ready() || !w1.Ready() {
		t.Fatal("caught-up workers report not ready")
	}
	before := len(w0.Restores())
	if err := w1.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "w0 to own every partition", func() bool { return len(w0.Assigned()) == partitions })
	for _, id := range ids {
		wantStatus(t, h.Send(cmd("account", id, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 6)
	}
	// Each partition's changelog holds 5 snapshot records (plus markers):
	// a cold takeover would read them all; a warm one reads none.
	read := map[int32]int{}
	for _, rep := range w0.Restores()[before:] {
		read[rep.Partition] += rep.Records
	}
	for _, p := range owned1 {
		if read[p] != 0 {
			t.Fatalf("takeover of partition %d read %d changelog records; the standby should have had them", p, read[p])
		}
	}
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
}

// A worker reports not-ready until every partition it owns is caught up,
// restores eagerly on assignment (before any command arrives), and reports
// the restore's progress per partition.
func TestReadinessWaitsForRestore(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded() // fault injection
	w0 := h.StartProcessor("w0", "")
	ids := idsPerPartition("rd")
	for i := range 3 {
		for _, id := range ids {
			typ, body := "Deposit", `{"amount":1}`
			if i == 0 {
				typ, body = "OpenAccount", `{"owner":"O","currency":"EUR"}`
			}
			wantStatus(t, h.Send(cmd("account", id, typ, body)), wire.StatusAccepted, int64(i+1))
		}
	}
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	if w0.Ready() {
		t.Fatal("a stopped worker reports ready")
	}
	// A fresh worker (empty state) must restore every partition; holding
	// its first changelog fetch keeps it restoring.
	topics, err := h.Admin().ListTopics(context.Background(), "snapshots-changelog")
	if err != nil {
		t.Fatal(err)
	}
	changelogID := topics["snapshots-changelog"].ID
	var hold atomic.Bool
	hold.Store(true)
	h.Cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		h.Cluster.KeepControl()
		f := req.(*kmsg.FetchRequest)
		for _, tp := range f.Topics {
			if (tp.Topic == "snapshots-changelog" || tp.TopicID == changelogID) && hold.Load() {
				h.Cluster.SleepControl(func() {
					for hold.Load() {
						time.Sleep(10 * time.Millisecond)
					}
				})
			}
		}
		return nil, nil, false
	})
	fresh := h.StartProcessor("w1", "")
	eventually(t, "a restoring partition", func() bool {
		for _, s := range fresh.PartitionStates() {
			if s.Role == topology.RoleActive && !s.Ready && s.Total > 0 && s.Lag > 0 {
				return true
			}
		}
		return false
	})
	if fresh.Ready() {
		t.Fatal("worker reports ready while restoring")
	}
	hold.Store(false)
	// No command is sent: the stores are restored on assignment.
	eventually(t, "readiness", fresh.Ready)
	states := fresh.PartitionStates()
	if len(states) != partitions {
		t.Fatalf("states %+v, want one per partition", states)
	}
	total := 0
	for _, s := range states {
		if !s.Ready || s.Lag != 0 || s.Role != topology.RoleActive || s.Restored != s.Total {
			t.Fatalf("partition state %+v after restore", s)
		}
	}
	for _, r := range fresh.Restores() {
		total += r.Records
	}
	if want := 3 * len(ids); total != want {
		t.Fatalf("eager restore read %d records, want %d", total, want)
	}
}

// A transaction someone leaves open on a command partition is reported with
// its producer id once it is older than the threshold.
func TestHangingTransactionIsReported(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w0 := h.StartProcessor("w0", "", func(c *topology.Config) { c.HangingTxnThreshold = 500 * time.Millisecond })
	wantStatus(t, h.Send(cmd("account", "hx", "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)

	rogue, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(h.Brokers...), kgo.TransactionalID("rogue-" + h.Topic("commands")),
		kgo.TransactionTimeout(10 * time.Minute), kgo.DefaultProduceTopic(h.Topic("commands"))}, h.ClientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rogue.Close)
	if err := rogue.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	part := topology.PartitionFor([]byte("hx"), partitions)
	if err := rogue.ProduceSync(context.Background(), &kgo.Record{Key: []byte("hx"), Partition: part, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var hung []topology.HangingTransaction
	eventually(t, "the hanging transaction report", func() bool {
		hung = w0.HangingTransactions()
		return len(hung) > 0 && len(hung[0].ProducerIDs) > 0
	})
	if hung[0].Partition != part || hung[0].StableOffset >= hung[0].HighWatermark {
		t.Fatalf("report %+v, want partition %d stuck below its end", hung[0], part)
	}
	if w0.Stats().HangingTransactions != 1 {
		t.Fatalf("hanging transactions counted %d, want 1", w0.Stats().HangingTransactions)
	}
	// Aborting it clears it.
	if err := rogue.EndTransaction(context.Background(), kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the report to clear", func() bool { return len(w0.HangingTransactions()) == 0 })
}

// A graceful stop commits or aborts the open transaction, closes the stores
// and leaves the group: the restarted worker restores nothing.
func TestGracefulStopNeedsNoRestore(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w0 := h.StartProcessor("w0", "")
	ids := idsPerPartition("gs")
	for _, id := range ids {
		wantStatus(t, h.Send(cmd("account", id, "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	}
	// Stop while commands are flowing.
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			_, _ = h.Client().Send(ctx, cmd("account", id, "Deposit", `{"amount":3}`))
		}()
	}
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	// Leaving the group is immediate: no session timeout to wait for.
	adm := h.Admin()
	eventually(t, "the group to be empty", func() bool {
		gs, err := adm.DescribeGroups(context.Background(), "kcqrs-processor")
		return err == nil && len(gs["kcqrs-processor"].Members) == 0
	})
	again := h.StartProcessor("w0", w0.StateDir)
	wg.Wait()
	eventually(t, "readiness", again.Ready)
	for _, id := range ids {
		h.Send(cmd("account", id, "Deposit", `{"amount":1}`))
	}
	for _, rep := range again.Restores() {
		if rep.Records != 0 || rep.Rebuilt {
			t.Fatalf("restart after a graceful stop restored %+v, want nothing", rep)
		}
	}
	if len(again.Restores()) == 0 {
		t.Fatal("no catch-up reported")
	}
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
}

// A static member (KIP-345) is not removed by franz-go's Close; a stopping
// worker must leave explicitly, or its partitions would wait for its session
// to expire.
func TestStaticMemberLeavesOnStop(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded() // fault injection
	var left atomic.Bool
	h.Cluster.ControlKey(int16(kmsg.LeaveGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		h.Cluster.KeepControl()
		for _, m := range req.(*kmsg.LeaveGroupRequest).Members {
			if m.InstanceID != nil && *m.InstanceID == "s0" {
				left.Store(true)
			}
		}
		return nil, nil, false
	})
	static := func(c *topology.Config) { c.StaticMembership = true }
	w0 := h.StartProcessor("s0", "", static)
	wantStatus(t, h.Send(cmd("account", "st", "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	if !left.Load() {
		t.Fatal("the stopped static member did not leave the group")
	}
	adm := h.Admin()
	eventually(t, "the group to be empty", func() bool {
		gs, err := adm.DescribeGroups(context.Background(), "kcqrs-processor")
		return err == nil && len(gs["kcqrs-processor"].Members) == 0
	})
	// Restarted, it owns everything again and its store is complete.
	w1 := h.StartProcessor("s0", w0.StateDir, static)
	wantStatus(t, h.Send(cmd("account", "st", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	for _, rep := range w1.Restores() {
		if rep.Records != 0 {
			t.Fatalf("restart restored %+v", rep)
		}
	}
}
