package topology_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// readUncommitted returns every record of topic up to its high watermark,
// including those of aborted and open transactions.
func readUncommitted(t *testing.T, h *topologytest.Harness, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := h.Admin().ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	start := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition], start[o.Partition] = o.Offset, kgo.NewOffset().AtStart()
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s uncommitted: %v", topic, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset < end {
				if !r.Attrs.IsControl() {
					out = append(out, r)
				}
				if r.Offset >= end-1 {
					delete(want, r.Partition)
				}
			}
		})
	}
	return out
}

// A command with two events: when its transaction aborts, neither event is
// visible (although both were written); after the retry commits, both are,
// at consecutive versions.
func TestManyEventsAllOrNone(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded() // fault injection
	w := h.StartProcessor("w0", "")
	wantStatus(t, h.Send(cmd("account", "mm", "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("account", "mm", "Deposit", `{"amount":40}`)), wire.StatusAccepted, 2)

	fh := h.Cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.UnknownServerError, Count: 1})
	rep := h.Send(cmd("account", "mm", "PayOutAndClose", `{}`))
	wantStatus(t, rep, wire.StatusAccepted, 4)
	if rep.Events != 2 {
		t.Fatalf("reply %+v: want 2 events", rep)
	}
	if fh.Hits() == 0 || w.Stats().Aborted == 0 {
		t.Fatalf("the fault did not abort a transaction (hits %d, stats %+v)", fh.Hits(), w.Stats())
	}
	versions, types := eventsOf(t, h)
	contiguous(t, versions)
	if got := fmt.Sprint(types["account/mm"]); got != "[AccountOpened MoneyDeposited MoneyWithdrawn AccountClosed]" {
		t.Fatalf("committed events %s", got)
	}
	// The aborted attempt wrote both events too; read_committed hid both.
	written := map[string]int{}
	for _, r := range readUncommitted(t, h, "events") {
		if string(r.Key) == "mm" {
			written[header(r, wire.HeaderEventType)]++
		}
	}
	if written["MoneyWithdrawn"] != 2 || written["AccountClosed"] != 2 {
		t.Fatalf("events written (committed or not): %v; want both events of the aborted attempt and of the retry", written)
	}
}

// Bad input the processor cannot read: answered INVALID, dead-lettered with
// its original bytes, and the partition keeps flowing.
func TestOversizedAndKeylessCommandsAreDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// The limit bounds the whole record (key, value and headers: about
	// 350 bytes for a small command with the client's headers).
	h.StartProcessor("w0", "", func(c *topology.Config) { c.MaxCommandBytes = 600 })
	p := topology.PartitionFor([]byte("k"), partitions)
	big := commandRecord("k", p, "OpenAccount", `{"owner":"`+strings.Repeat("x", 1000)+`","currency":"USD"}`)
	noKey := commandRecord("k", p, "OpenAccount", `{"owner":"O","currency":"USD"}`)
	noKey.Key = nil
	emptyKey := commandRecord("k", p, "OpenAccount", `{"owner":"O","currency":"USD"}`)
	emptyKey.Key = []byte{}
	for _, b := range []struct {
		name string
		rec  *kgo.Record
		code string
	}{
		{"oversized", big, topology.CodeTooLarge},
		{"missing key", noKey, topology.CodeMissingKey},
		{"empty key", emptyKey, topology.CodeMissingKey},
	} {
		rep := rawSend(t, h, b.rec)
		if rep.Status != wire.StatusInvalid || rep.Code != b.code {
			t.Fatalf("%s: reply %+v, want INVALID %s", b.name, rep, b.code)
		}
	}
	wantStatus(t, h.Send(cmd("account", "k", "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
	dlq := h.ReadTopic("commands-dlq")
	if len(dlq) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dlq))
	}
	if !bytes.Equal(dlq[0].Value, big.Value) && !bytes.Equal(dlq[1].Value, big.Value) && !bytes.Equal(dlq[2].Value, big.Value) {
		t.Fatal("the oversized command is not in the dead-letter topic byte for byte")
	}
	for _, d := range dlq {
		if header(d, wire.HeaderDLQError) == "" {
			t.Fatalf("dead letter without an error header: %v", d.Headers)
		}
	}
	versions, _ := eventsOf(t, h)
	if len(versions["account/k"]) != 1 {
		t.Fatalf("events of k %v: want only the valid open", versions["account/k"])
	}
}

// panicky is the account aggregate with a bug: withdrawing 13 panics.
var panicky = aggregates.Type[account.Account]{
	Name: "panicky",
	Decide: func(s account.Account, c aggregates.Command) ([]aggregates.Event, error) {
		if w, ok := c.(account.Withdraw); ok && w.Amount == 13 {
			panic("unlucky number")
		}
		return account.Decide(s, c)
	},
	Evolve:   account.Evolve,
	Commands: account.Type.Commands,
	Events:   account.Type.Events,
}

func TestHandlerPanicIsInternalErrorAndDeadLettered(t *testing.T) {
	t.Parallel()
	h := harnessWith(t, panicky)
	w := h.StartProcessor("w0", "")
	wantStatus(t, h.Send(cmd("panicky", "p", "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("panicky", "p", "Deposit", `{"amount":20}`)), wire.StatusAccepted, 2)
	rep := h.Send(cmd("panicky", "p", "Withdraw", `{"amount":13}`))
	if rep.Status != wire.StatusInternalError || rep.Code != topology.CodeHandlerPanic || rep.Version != 2 {
		t.Fatalf("panicking handler answered %+v, want INTERNAL_ERROR %s at version 2", rep, topology.CodeHandlerPanic)
	}
	// The same aggregate and partition keep working.
	wantStatus(t, h.Send(cmd("panicky", "p", "Withdraw", `{"amount":12}`)), wire.StatusAccepted, 3)
	dlq := h.ReadTopic("commands-dlq")
	if len(dlq) != 1 || !strings.Contains(header(dlq[0], wire.HeaderDLQError), "unlucky number") {
		t.Fatalf("dead letters %v", dlq)
	}
	if w.Err() != nil {
		t.Fatalf("processor ended: %v", w.Err())
	}
}

// The dedupe memory travels with the partition: after the partition moved to
// another worker (with an empty state directory), a retried command is still
// answered as a duplicate and does nothing.
func TestDuplicateAfterRebalance(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w0 := h.StartProcessor("w0", "")
	wantStatus(t, h.Send(cmd("account", "rb", "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
	dep := cmd("account", "rb", "Deposit", `{"amount":5}`)
	dep.ID = "rb-dep"
	wantStatus(t, h.Send(dep), wire.StatusAccepted, 2)

	w1 := h.StartProcessor("w1", "")
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	p := topology.PartitionFor([]byte("rb"), partitions)
	deadline := time.Now().Add(60 * time.Second)
	for !owns(w1, p) {
		if time.Now().After(deadline) {
			t.Fatalf("partition %d never moved to w1 (owns %v)", p, w1.Assigned())
		}
		time.Sleep(50 * time.Millisecond)
	}
	rep := h.Send(dep)
	if !rep.Duplicate || rep.Status != wire.StatusAccepted || rep.Version != 2 {
		t.Fatalf("retry after the rebalance answered %+v, want the original reply marked duplicate", rep)
	}
	// Stats count after the commit, which may be just after the reply shows.
	for w1.Stats().Duplicates != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("w1 stats %+v: the duplicate was not answered by the new owner", w1.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantStatus(t, h.Send(cmd("account", "rb", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
	if len(versions["account/rb"]) != 3 {
		t.Fatalf("versions %v", versions["account/rb"])
	}
}

func owns(w *topologytest.Running, p int32) bool {
	for _, q := range w.Assigned() {
		if q == p {
			return true
		}
	}
	return false
}

// Many clients race on one aggregate, each expecting the version it saw:
// exactly one wins each version, every other gets CONFLICT with the new one.
func TestRacingClientsExactlyOneWinsEachVersion(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	wantStatus(t, h.Send(cmd("account", "race", "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
	cl := h.Client()
	const racers, rounds = 8, 5
	for v := int64(1); v <= rounds; v++ {
		replies := make([]wire.Reply, racers)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := cmd("account", "race", "Deposit", fmt.Sprintf(`{"amount":%d}`, 1+i))
				c.ExpectedVersion = fmt.Sprint(v)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				replies[i], errs[i] = cl.Send(ctx, c)
			}()
		}
		wg.Wait()
		wins := 0
		for i, rep := range replies {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			switch rep.Status {
			case wire.StatusAccepted:
				wins++
				wantStatus(t, rep, wire.StatusAccepted, v+1)
			case wire.StatusConflict:
				wantStatus(t, rep, wire.StatusConflict, v+1)
			default:
				t.Fatalf("racer %d at version %d: %+v", i, v, rep)
			}
		}
		if wins != 1 {
			t.Fatalf("version %d: %d winners", v, wins)
		}
	}
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
	if len(versions["account/race"]) != rounds+1 {
		t.Fatalf("versions %v", versions["account/race"])
	}
}

// A produce the broker fails must abort the whole transaction, also when the
// failure arrives while the transaction is ending: never a committed reply,
// snapshot and offset without the command's event.
func TestFailedEventProduceAbortsTheTransaction(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded() // fault injection
	w := h.StartProcessor("w0", "")
	wantStatus(t, h.Send(cmd("account", "pf", "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
	for i := range 3 {
		fh := h.Cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "events", Err: kerr.UnknownServerError, Count: 1})
		wantStatus(t, h.Send(cmd("account", "pf", "Deposit", `{"amount":1}`)), wire.StatusAccepted, int64(i+2))
		if fh.Hits() == 0 {
			t.Fatal("fault never hit")
		}
	}
	if w.Stats().Aborted == 0 {
		t.Fatalf("no transaction aborted: %+v", w.Stats())
	}
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
	if len(versions["account/pf"]) != 4 {
		t.Fatalf("events of pf at versions %v, want 4 (a committed reply lost its event)", versions["account/pf"])
	}
	snaps, _, _ := latestSnapshots(t, h)
	if snaps["account/pf"].Version != 4 {
		t.Fatalf("snapshot at version %d", snaps["account/pf"].Version)
	}
}
