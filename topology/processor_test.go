package topology_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/internal/examples/examplestest"
	"github.com/kcqrs/kcqrs/snapshots"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

const partitions = 4

func newHarness(t *testing.T) *topologytest.Harness {
	t.Helper()
	return examplestest.Harness(t, partitions)
}

func cmd(aggType, id, typ, json string) client.Command {
	return client.Command{AggregateType: aggType, AggregateID: id, Type: typ, JSON: []byte(json)}
}

func wantStatus(t *testing.T, rep wire.Reply, status wire.Status, version int64) {
	t.Helper()
	if rep.Status != status || rep.Version != version {
		t.Fatalf("reply %+v: want status %s at version %d", rep, status, version)
	}
}

// eventsOf decodes the events topic and returns, per aggregate key, the
// versions in log order.
func eventsOf(t *testing.T, h *topologytest.Harness) (map[string][]int64, map[string][]string) {
	t.Helper()
	versions := map[string][]int64{}
	types := map[string][]string{}
	for _, r := range h.ReadTopic("events") {
		env, ev, err := h.Registry.DecodeEvent(r.Value)
		if err != nil {
			t.Fatalf("event at %d/%d: %v", r.Partition, r.Offset, err)
		}
		if ev == nil || ev.EventType() != env.EventType {
			t.Fatalf("event %+v decoded to %#v", env, ev)
		}
		if want := topology.PartitionFor([]byte(env.AggregateID), partitions); r.Partition != want {
			t.Fatalf("event of %s on partition %d, want %d", env.AggregateID, r.Partition, want)
		}
		k := env.AggregateType + "/" + env.AggregateID
		versions[k] = append(versions[k], env.Version)
		types[k] = append(types[k], env.EventType)
	}
	return versions, types
}

// contiguous fails unless every aggregate's versions are exactly 1..n.
func contiguous(t *testing.T, versions map[string][]int64) {
	t.Helper()
	for k, vs := range versions {
		for i, v := range vs {
			if v != int64(i+1) {
				t.Fatalf("%s: versions %v are not 1..%d (duplicate or gap)", k, vs, len(vs))
			}
		}
	}
}

// latestSnapshots decodes the changelog, keeping the last snapshot per key.
func latestSnapshots(t *testing.T, h *topologytest.Harness) (map[string]wire.Snapshot, map[string]any, int) {
	t.Helper()
	snaps := map[string]wire.Snapshot{}
	states := map[string]any{}
	recs := h.ReadTopic("snapshots-changelog")
	for _, r := range recs {
		s, st, err := h.Registry.DecodeSnapshot(r.Value)
		if err != nil {
			t.Fatalf("snapshot %s: %v", r.Key, err)
		}
		if string(r.Key) != s.AggregateType+"/"+s.AggregateID {
			t.Fatalf("snapshot key %q for %s/%s", r.Key, s.AggregateType, s.AggregateID)
		}
		snaps[string(r.Key)], states[string(r.Key)] = s, st
	}
	return snaps, states, len(recs)
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")

	wantStatus(t, h.Send(cmd("account", "a1", "OpenAccount", `{"owner":"Ann","currency":"EUR"}`)), wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("account", "a1", "Deposit", `{"amount":1000}`)), wire.StatusAccepted, 2)
	rep := h.Send(cmd("account", "a1", "Withdraw", `{"amount":5000}`))
	wantStatus(t, rep, wire.StatusRejected, 2)
	if rep.Code != account.CodeInsufficientFunds {
		t.Fatalf("overdraft rejected with %q, want %q", rep.Code, account.CodeInsufficientFunds)
	}
	wantStatus(t, h.Send(cmd("account", "a1", "Withdraw", `{"amount":400}`)), wire.StatusAccepted, 3)
	// A second aggregate type, handled by the same worker.
	wantStatus(t, h.Send(cmd("folder", "f1", "CreateFolder", `{"name":"docs"}`)), wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("folder", "f1", "DeleteFolder", `{}`)), wire.StatusAccepted, 2)
	rep = h.Send(cmd("folder", "f1", "RenameFolder", `{"name":"x"}`))
	if rep.Status != wire.StatusRejected || rep.Code != "deleted" {
		t.Fatalf("rename after delete: %+v", rep)
	}
	// Avro in, Avro out.
	set, err := schemasAccount()
	if err != nil {
		t.Fatal(err)
	}
	c, err := set.Codec("Deposit")
	if err != nil {
		t.Fatal(err)
	}
	val, err := c.Encode(account.Deposit{Amount: 1})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, h.Send(client.Command{AggregateType: "account", AggregateID: "a1", Type: "Deposit", Avro: val}), wire.StatusAccepted, 4)

	versions, types := eventsOf(t, h)
	contiguous(t, versions)
	if got := fmt.Sprint(types["account/a1"]); got != "[AccountOpened MoneyDeposited MoneyWithdrawn MoneyDeposited]" {
		t.Fatalf("account events %s", got)
	}
	if got := fmt.Sprint(types["folder/f1"]); got != "[FolderCreated FolderDeleted]" {
		t.Fatalf("folder events %s", got)
	}
	snaps, states, _ := latestSnapshots(t, h)
	if s := snaps["account/a1"]; s.Version != 4 || len(s.Recent) != 5 {
		t.Fatalf("account snapshot %+v: want version 4 and 5 remembered commands", s)
	}
	if st := states["account/a1"].(account.Account); st.Balance != 601 || st.Owner != "Ann" || st.Status != "open" {
		t.Fatalf("account state %+v", st)
	}
	// Every reply is in its command's encoding: one Avro command, the rest JSON.
	byType := map[string]int{}
	for _, r := range h.ReadTopic("command_reply") {
		byType[contentType(r)]++
	}
	if byType[wire.ContentTypeAvro] != 1 || byType[wire.ContentTypeJSON] != 7 {
		t.Fatalf("reply content types %v, want 1 Avro and 7 JSON", byType)
	}
}

// The command rules of the spine: a retried command id gets the original
// reply and does nothing (also after a full restore), a version mismatch is a
// conflict, and a command past its deadline expires; none of them writes an
// event.
func TestDuplicateConflictAndDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w := h.StartProcessor("w0", "")
	open := cmd("account", "d", "OpenAccount", `{"owner":"O","currency":"USD"}`)
	open.ExpectedVersion = wire.ExpectNoStream
	wantStatus(t, h.Send(open), wire.StatusAccepted, 1)
	dep := cmd("account", "d", "Deposit", `{"amount":5}`)
	dep.ID = "dep-1"
	first := h.Send(dep)
	wantStatus(t, first, wire.StatusAccepted, 2)
	again := h.Send(dep)
	if !again.Duplicate || again.Status != wire.StatusAccepted || again.Version != 2 || again.CommandID != "dep-1" {
		t.Fatalf("retry answered %+v, want the original reply marked duplicate", again)
	}
	// A remembered rejection comes back with its code and message.
	over := cmd("account", "d", "Withdraw", `{"amount":1000}`)
	over.ID = "over-1"
	rejected := h.Send(over)
	if rejected.Status != wire.StatusRejected || rejected.Code == "" || rejected.Message == "" {
		t.Fatalf("overdraft answered %+v, want a rejection with a code and a message", rejected)
	}
	// A retry gets exactly the original reply, only marked duplicate (the
	// snapshot keeps part of it and the rest is rebuilt).
	sameAsFirst := func(when string, orig wire.Reply, c client.Command) {
		t.Helper()
		want := orig
		want.Duplicate = true
		if got := h.Send(c); got != want {
			t.Fatalf("retry %s answered\n%+v, want\n%+v", when, got, want)
		}
	}
	sameAsFirst("at once", first, dep)
	sameAsFirst("at once", rejected, over)

	stale := cmd("account", "d", "Deposit", `{"amount":5}`)
	stale.ExpectedVersion = "1"
	rep := h.Send(stale)
	wantStatus(t, rep, wire.StatusConflict, 2)
	reopen := open
	reopen.ID = ""
	wantStatus(t, h.Send(reopen), wire.StatusConflict, 2)

	late := cmd("account", "d", "Deposit", `{"amount":5}`)
	late.Deadline = time.Now().Add(-time.Minute)
	wantStatus(t, h.Send(late), wire.StatusExpired, 2)

	// The dedupe memory lives in the snapshot: a worker with an empty state
	// directory still knows the command.
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	h.StartProcessor("w0", "")
	if rep := h.Send(dep); !rep.Duplicate || rep.Version != 2 {
		t.Fatalf("retry after a full restore answered %+v", rep)
	}
	sameAsFirst("after a full restore", first, dep)
	sameAsFirst("after a full restore", rejected, over)
	versions, _ := eventsOf(t, h)
	if got := versions["account/d"]; len(got) != 2 {
		t.Fatalf("events of d at versions %v, want only the open and one deposit", got)
	}
}

// The dedupe memory holds exactly the last DedupeWindow commands, in the
// running worker (its cache) and in the snapshot alike.
func TestDedupeWindowIsBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "", func(c *topology.Config) { c.DedupeWindow = 3 })
	open := cmd("account", "w", "OpenAccount", `{"owner":"O","currency":"USD"}`)
	open.ID = "w-0"
	wantStatus(t, h.Send(open), wire.StatusAccepted, 1)
	for i := 1; i <= 5; i++ {
		dep := cmd("account", "w", "Deposit", `{"amount":1}`)
		dep.ID = fmt.Sprintf("w-%d", i)
		wantStatus(t, h.Send(dep), wire.StatusAccepted, int64(i+1))
	}
	// w-3, w-4, w-5 are remembered; w-2 fell out of the window.
	old := cmd("account", "w", "Deposit", `{"amount":1}`)
	old.ID = "w-3"
	if rep := h.Send(old); !rep.Duplicate || rep.Version != 4 {
		t.Fatalf("retry inside the window answered %+v", rep)
	}
	old.ID = "w-2"
	if rep := h.Send(old); rep.Duplicate || rep.Version != 7 {
		t.Fatalf("retry outside the window answered %+v, want a new deposit at version 7", rep)
	}
	snaps, _, _ := latestSnapshots(t, h)
	s := snaps["account/w"]
	if len(s.Recent) != 3 || s.Recent[0].CommandID != "w-4" || s.Recent[2].CommandID != "w-2" {
		t.Fatalf("snapshot remembers %+v, want w-4, w-5, w-2", s.Recent)
	}
}

func TestRestartRestoresOnlyTheTail(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	first := h.StartProcessor("w0", "")
	ids := []string{"r1", "r2", "r3", "r4", "r5", "r6"}
	for _, id := range ids {
		wantStatus(t, h.Send(cmd("account", id, "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
		wantStatus(t, h.Send(cmd("account", id, "Deposit", `{"amount":10}`)), wire.StatusAccepted, 2)
	}
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	// Another worker (its own, empty state) moves r1 on and opens a second
	// account of r1's partition while the first is down: the first worker's
	// store misses exactly these two changelog records. They have different
	// keys, so a compaction of the changelog (the broker process cleans it
	// every 30 s) cannot take either away.
	p := topology.PartitionFor([]byte("r1"), partitions)
	neighbour := ""
	for i := 0; neighbour == ""; i++ {
		if id := fmt.Sprintf("n%d", i); topology.PartitionFor([]byte(id), partitions) == p {
			neighbour = id
		}
	}
	other := h.StartProcessor("w1", "")
	wantStatus(t, h.Send(cmd("account", "r1", "Deposit", `{"amount":5}`)), wire.StatusAccepted, 3)
	wantStatus(t, h.Send(cmd("account", neighbour, "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
	if err := other.Stop(); err != nil {
		t.Fatal(err)
	}

	again := h.StartProcessor("w0", first.StateDir)
	wantStatus(t, h.Send(cmd("account", "r1", "Withdraw", `{"amount":15}`)), wire.StatusAccepted, 4)
	// The store may be caught up in two steps (eagerly on assignment, then
	// the last few records before the first command): together they read
	// exactly the records written while the worker was down.
	var found bool
	records := 0
	for _, rep := range again.Restores() {
		if rep.Partition != p {
			continue
		}
		found = true
		records += rep.Records
		if rep.Rebuilt {
			t.Fatalf("restore of partition %d rebuilt the store", p)
		}
	}
	if found && records != 2 {
		t.Fatalf("restores of partition %d read %d records, want exactly the 2 written while it was down: %+v", p, records, again.Restores())
	}
	if !found {
		t.Fatalf("no restore of partition %d reported: %+v", p, again.Restores())
	}
	// A partition nobody wrote to meanwhile needs no records at all.
	for _, id := range ids[1:] {
		q := topology.PartitionFor([]byte(id), partitions)
		if q == p {
			continue
		}
		wantStatus(t, h.Send(cmd("account", id, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
		for _, rep := range again.Restores() {
			if rep.Partition == q && rep.Records != 0 {
				t.Fatalf("partition %d restored %d records after a clean stop, want 0", q, rep.Records)
			}
		}
		break
	}
}

// A worker that loses a partition and gets it back must not act on the
// state it cached before: another worker moved the aggregates on meanwhile.
// (franz-go also aborts the first transaction after a rebalance, which
// takes the stale entry out as well; the processor's own drop on revoke and
// on catch-up does not rely on that.)
func TestRegainedPartitionForgetsCachedState(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.StartProcessor("a", "")
	ids := make([]string, 16)
	for i := range ids {
		ids[i] = fmt.Sprintf("g%d", i)
		wantStatus(t, h.Send(cmd("account", ids[i], "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
	}
	b := h.StartProcessor("b", "")
	var moved string
	deadline := time.Now().Add(60 * time.Second)
	for moved == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no partition moved to the second worker: a owns %v, b owns %v", a.Assigned(), b.Assigned())
		}
		if len(a.Assigned())+len(b.Assigned()) == partitions {
			for _, p := range b.Assigned() {
				for _, id := range ids {
					if topology.PartitionFor([]byte(id), partitions) == p && moved == "" {
						moved = id
					}
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantStatus(t, h.Send(cmd("account", moved, "Deposit", `{"amount":5}`)), wire.StatusAccepted, 2)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, h.Send(cmd("account", moved, "Deposit", `{"amount":5}`)), wire.StatusAccepted, 3)
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
}

func TestFreshStateDirRestoresEverything(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	first := h.StartProcessor("w0", "")
	for i := range 10 {
		id := fmt.Sprintf("f%d", i)
		wantStatus(t, h.Send(cmd("account", id, "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
		wantStatus(t, h.Send(cmd("account", id, "Deposit", fmt.Sprintf(`{"amount":%d}`, 100+i))), wire.StatusAccepted, 2)
	}
	wantStatus(t, h.Send(cmd("folder", "d", "CreateFolder", `{"name":"n"}`)), wire.StatusAccepted, 1)
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	latest, _, changelogRecords := latestSnapshots(t, h)

	fresh := h.StartProcessor("w0", "")
	// Touch every partition so each store is restored, and check the
	// restored state answers correctly.
	for i := range 10 {
		id := fmt.Sprintf("f%d", i)
		rep := h.Send(cmd("account", id, "Withdraw", fmt.Sprintf(`{"amount":%d}`, 100+i)))
		wantStatus(t, rep, wire.StatusAccepted, 3)
	}
	wantStatus(t, h.Send(cmd("folder", "d", "RenameFolder", `{"name":"m"}`)), wire.StatusAccepted, 2)
	restored := 0
	for _, rep := range fresh.Restores() {
		restored += rep.Records
	}
	// A compaction between the read above and the restore may leave only
	// the latest snapshot per key; it never leaves fewer.
	if restored > changelogRecords || restored < len(latest) {
		t.Fatalf("fresh store restored %d records, changelog held %d (%d keys)", restored, changelogRecords, len(latest))
	}
	if err := fresh.Stop(); err != nil {
		t.Fatal(err)
	}
	// The rebuilt stores equal the changelog's latest snapshot per key.
	snaps, _, _ := latestSnapshots(t, h)
	fromStores := map[string]int64{}
	for p := int32(0); p < partitions; p++ {
		st, err := snapshots.Open(snapshots.PartitionDir(fresh.StateDir, h.Topic("snapshots-changelog"), p), snapshots.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = st.Scan(func(k, v []byte) error {
			s, _, err := h.Registry.DecodeSnapshot(v)
			fromStores[string(k)] = s.Version
			return err
		})
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(fromStores) != len(snaps) {
		t.Fatalf("stores hold %d aggregates, changelog %d", len(fromStores), len(snaps))
	}
	for k, s := range snaps {
		if fromStores[k] != s.Version {
			t.Fatalf("%s: store at version %d, changelog at %d", k, fromStores[k], s.Version)
		}
	}
}

// A transaction the broker fails must leave nothing behind, and its retry
// must produce every effect exactly once.
func TestFailedTransactionIsRetriedExactlyOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	w := h.StartProcessor("w0", "")
	wantStatus(t, h.Send(cmd("account", "x", "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)

	// The next offset commit inside a transaction fails: End must abort and
	// the batch must come again.
	fh := h.Cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.UnknownServerError, Count: 1})
	wantStatus(t, h.Send(cmd("account", "x", "Deposit", `{"amount":7}`)), wire.StatusAccepted, 2)
	if fh.Hits() == 0 {
		t.Fatal("fault never hit")
	}
	if w.Stats().Aborted == 0 {
		t.Fatal("no transaction aborted")
	}
	wantStatus(t, h.Send(cmd("account", "x", "Deposit", `{"amount":3}`)), wire.StatusAccepted, 3)

	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
	if len(versions["account/x"]) != 3 {
		t.Fatalf("account/x versions %v, want 3 events", versions["account/x"])
	}
	replies := 0
	for _, r := range h.ReadTopic("command_reply") {
		if string(r.Key) == "x" {
			replies++
		}
	}
	if replies != 3 {
		t.Fatalf("%d replies for 3 commands", replies)
	}
}

// When the broker keeps failing EndTxn (INVALID_TXN_STATE, not a fence),
// the worker applies nothing and makes nothing visible, but does not stop:
// it backs off and recreates its transactional session (a new producer with
// the same transactional id aborts the open transaction), again and again.
// Once the broker recovers the command is handled exactly once; a restarted
// worker with the same instance id goes on from there.
func TestEndTxnFailureThenRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	dir := t.TempDir()
	w := h.StartProcessor("w0", dir)
	wantStatus(t, h.Send(cmd("account", "y", "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)

	fh := h.Cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, Err: kerr.InvalidTxnState, Count: -1})
	cl := h.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	type result struct {
		rep wire.Reply
		err error
	}
	res := make(chan result, 1)
	go func() {
		rep, err := cl.Send(ctx, cmd("account", "y", "Deposit", `{"amount":9}`))
		res <- result{rep, err}
	}()
	pollUntil(t, "the session to be recreated twice", 60*time.Second, func() bool { return w.Stats().SessionsRecreated >= 2 })
	if err := w.Err(); err != nil {
		t.Fatalf("processor stopped while EndTxn failed: %v", err)
	}
	select {
	case r := <-res:
		t.Fatalf("a reply became visible although the transaction never ended: %+v %v", r.rep, r.err)
	default:
	}
	fh.Remove()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantStatus(t, r.rep, wire.StatusAccepted, 2)
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	h.StartProcessor("w0", dir)
	wantStatus(t, h.Send(cmd("account", "y", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
	if len(versions["account/y"]) != 3 {
		t.Fatalf("versions %v", versions["account/y"])
	}
}

// rawSend produces rec as is (manual partition) and waits for the reply with
// its correlation id.
func rawSend(t *testing.T, h *topologytest.Harness, rec *kgo.Record) wire.Reply {
	t.Helper()
	rep, _ := rawSendTo(t, h, rec)
	return rep
}

// rawSendTo is rawSend that also returns the partition the reply came on.
func rawSendTo(t *testing.T, h *topologytest.Harness, rec *kgo.Record) (wire.Reply, int32) {
	t.Helper()
	corr := client.NewID()
	rec.Headers = append(rec.Headers,
		kgo.RecordHeader{Key: wire.HeaderCorrelationID, Value: []byte(corr)},
		kgo.RecordHeader{Key: wire.HeaderReplyTopic, Value: []byte(h.Topic("command_reply"))},
	)
	rec.Topic = h.Topic(rec.Topic)
	h.Client() // topics exist
	prod := manualProducer(t, h)
	defer prod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		for _, r := range h.ReadTopic("command_reply") {
			for _, hd := range r.Headers {
				if hd.Key == wire.HeaderCorrelationID && string(hd.Value) == corr {
					rep, err := h.Registry.DecodeReply(r.Value, contentType(r))
					if err != nil {
						t.Fatal(err)
					}
					return rep, r.Partition
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no reply")
	return wire.Reply{}, 0
}

func contentType(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == wire.HeaderContentType {
			return string(h.Value)
		}
	}
	return ""
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func commandRecord(id string, partition int32, typ, json string) *kgo.Record {
	return &kgo.Record{
		Topic: "commands", Partition: partition, Key: []byte(id), Value: []byte(json),
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte(client.NewID())},
			{Key: wire.HeaderCommandType, Value: []byte(typ)},
			{Key: wire.HeaderAggregateType, Value: []byte("account")},
			{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeJSON)},
		},
	}
}

func TestWrongPartitionIsRejected(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	right := topology.PartitionFor([]byte("z"), partitions)
	wrong := (right + 1) % partitions
	rep := rawSend(t, h, commandRecord("z", wrong, "OpenAccount", `{"owner":"O","currency":"USD"}`))
	if rep.Status != wire.StatusWrongPartition {
		t.Fatalf("reply %+v, want WRONG_PARTITION", rep)
	}
	// The same command on the right partition works, from version 0.
	rep = rawSend(t, h, commandRecord("z", right, "OpenAccount", `{"owner":"O","currency":"USD"}`))
	wantStatus(t, rep, wire.StatusAccepted, 1)
	versions, _ := eventsOf(t, h)
	if len(versions["account/z"]) != 1 {
		t.Fatalf("events of z: %v, want only the one from the right partition", versions["account/z"])
	}
	dlq := h.ReadTopic("commands-dlq")
	if len(dlq) != 1 || header(dlq[0], wire.HeaderDLQPartition) != fmt.Sprint(wrong) {
		t.Fatalf("dead letters %v", dlq)
	}
}

func TestMalformedCommandIsDeadLetteredAndDoesNotBlock(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	p := topology.PartitionFor([]byte("m"), partitions)
	bad := []struct {
		name string
		rec  *kgo.Record
		code string
	}{
		{"garbage avro", func() *kgo.Record {
			r := commandRecord("m", p, "OpenAccount", "\x00\x01garbage")
			r.Headers[3].Value = []byte(wire.ContentTypeAvro)
			return r
		}(), topology.CodeUndecodable},
		{"schema-invalid JSON", commandRecord("m", p, "OpenAccount", `{"owner": 5}`), topology.CodeUndecodable},
		{"unknown command type", commandRecord("m", p, "Launch", `{}`), topology.CodeUnknownCommand},
		{"unknown aggregate type", func() *kgo.Record {
			r := commandRecord("m", p, "OpenAccount", `{}`)
			r.Headers[2].Value = []byte("rocket")
			return r
		}(), topology.CodeUnknownAggregate},
		{"bad expected version", func() *kgo.Record {
			r := commandRecord("m", p, "OpenAccount", `{"owner":"O","currency":"USD"}`)
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderExpectedVersion, Value: []byte("soon")})
			return r
		}(), topology.CodeBadHeader},
		{"bad reply partition header", func() *kgo.Record {
			r := commandRecord("m", p, "OpenAccount", `{"owner":"O","currency":"USD"}`)
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderReplyPartition, Value: []byte{1}})
			return r
		}(), topology.CodeBadHeader},
	}
	for _, b := range bad {
		rep := rawSend(t, h, b.rec)
		if rep.Status != wire.StatusInvalid || rep.Code != b.code {
			t.Fatalf("%s: reply %+v, want INVALID %s", b.name, rep, b.code)
		}
	}
	// The partition is not blocked: the next good command is handled.
	wantStatus(t, h.Send(cmd("account", "m", "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)

	dlq := h.ReadTopic("commands-dlq")
	if len(dlq) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dlq), len(bad))
	}
	for i, d := range dlq {
		if !bytes.Equal(d.Value, bad[i].rec.Value) || header(d, wire.HeaderDLQError) == "" || header(d, wire.HeaderCommandType) == "" {
			t.Fatalf("dead letter %d: value %q headers %v", i, d.Value, d.Headers)
		}
	}
	// A command with a 4-byte reply partition is answered on that partition.
	r := commandRecord("m", p, "Deposit", `{"amount":1}`)
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderReplyPartition, Value: binary.BigEndian.AppendUint32(nil, 2)})
	rep, part := rawSendTo(t, h, r)
	wantStatus(t, rep, wire.StatusAccepted, 2)
	if part != 2 {
		t.Fatalf("reply on partition %d, want the requested 2", part)
	}
}

func TestPartitionCountMismatchRefusesToStart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	adm := h.Admin()
	ctx := context.Background()
	if _, err := adm.CreateTopic(ctx, 4, -1, nil, h.Topic("commands")); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 2, -1, nil, h.Topic("events")); err != nil {
		t.Fatal(err)
	}
	w := h.StartProcessor("w0", "")
	select {
	case <-w.Done():
		err := w.Err()
		var pm *topology.PartitionMismatchError
		if !errors.As(err, &pm) {
			t.Fatalf("Run returned %v, want a PartitionMismatchError", err)
		}
		w.Stop()
	case <-time.After(30 * time.Second):
		t.Fatal("processor started on topics with different partition counts")
	}
}

// A store that claims changelog offsets the changelog does not have (the
// topic was recreated) is wiped and rebuilt from the changelog: the
// changelog, not the local store, is the truth.
func TestStoreAheadOfChangelogIsRebuilt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	w := h.StartProcessor("w0", "")
	// Accepted commands: a rejection on a never-opened account writes no
	// snapshot, so it would not move the store's checkpoint.
	wantStatus(t, h.Send(cmd("account", "q", "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
	for i := range 2 {
		wantStatus(t, h.Send(cmd("account", "q", "Deposit", `{"amount":1}`)), wire.StatusAccepted, int64(i+2))
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := h.Cluster.DeleteTopic("snapshots-changelog"); err != nil {
		t.Fatal(err)
	}
	if err := h.Cluster.CreateTopic("snapshots-changelog", partitions, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	again := h.StartProcessor("w0", w.StateDir)
	wantStatus(t, h.Send(cmd("account", "q", "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
	p := topology.PartitionFor([]byte("q"), partitions)
	for _, rep := range again.Restores() {
		if rep.Partition == p {
			if !rep.Rebuilt {
				t.Fatalf("restore %+v: want a rebuild", rep)
			}
			return
		}
	}
	t.Fatalf("no restore of partition %d: %+v", p, again.Restores())
}
