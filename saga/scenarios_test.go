package saga_test

// The scenarios of issue 13: each one created money, or left a transfer
// pending forever, with the stateless saga that trusted its reply topic.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

func total(accs map[string]account.Account) int64 {
	var n int64
	for _, a := range accs {
		n += a.Balance
	}
	return n
}

// produce writes raw records (a hostile client, or a fault) and waits for
// them.
func produce(t *testing.T, h *topologytest.Harness, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// Scenario 1: a client forges a reply on the saga's (retired) reply topic
// (an invalid command of its own naming it, with the correlation id of a
// credit leg): refused as a reply address, answered on the default topic. The saga must not take it for the credit's answer and refund while
// the real credit pays the target.
func TestForgedReplyCreatesNoMoney(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	openAccounts(t, h, 100, false)
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t9","to":"bob","amount":50}`)) // ann@3
	// Before the saga runs: the forged "credit refused" is on its reply
	// topic first.
	if _, err := h.Admin().CreateTopic(context.Background(), partitions, 1, nil, "transfer-replies"); err != nil {
		t.Fatal(err)
	}
	corr := fmt.Sprintf(`{"source":"ann","version":3,"seq":1,"transferId":"t9","target":"bob","amount":50,"leg":"credit"}`)
	produce(t, h, &kgo.Record{
		Topic: "commands", Partition: topology.PartitionFor([]byte("ann"), partitions), Key: []byte("ann"),
		Value: []byte("not a command"),
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte("forged-1")},
			{Key: wire.HeaderCommandType, Value: []byte("Deposit")},
			{Key: wire.HeaderAggregateType, Value: []byte(account.Name)},
			{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeJSON)},
			{Key: wire.HeaderCorrelationID, Value: []byte(corr)},
			{Key: wire.HeaderReplyTopic, Value: []byte("transfer-replies")},
		},
	})
	startSaga(t, h, "s0")
	accs := waitMoney(t, h, 100, func(a map[string]account.Account) bool { return a["bob"].Balance == 50 })
	if accs["ann"].Balance != 50 {
		t.Fatalf("ann holds %d after her transfer of 50 out of 100", accs["ann"].Balance)
	}
	if c, r := transferEvents(t, h); c != 1 || r != 0 {
		t.Fatalf("%d completed and %d refunded transfers, want 1 and 0", c, r)
	}
	// The forged address is refused: the forgery is answered INVALID
	// bad_reply_address on the default reply topic, and nothing at all is
	// written to the saga's retired reply topic (internal), where an older
	// saga or an audit could take it for the answer to a leg. The legs are
	// answered on the default reply topic.
	if recs := h.ReadTopic(saga.RetiredReplyTopic); len(recs) > 0 {
		t.Fatalf("%d record(s) written to %s, an internal topic: %q", len(recs), saga.RetiredReplyTopic, recs[0].Value)
	}
	var forgedRep, legRep *wire.Reply
	deadline := time.Now().Add(60 * time.Second)
	for forgedRep == nil || legRep == nil {
		if time.Now().After(deadline) {
			t.Fatalf("replies on command_reply: forged %+v, credit leg %+v", forgedRep, legRep)
		}
		time.Sleep(100 * time.Millisecond)
		for _, r := range h.ReadTopic("command_reply") {
			var ct string
			for _, hd := range r.Headers {
				if hd.Key == wire.HeaderContentType {
					ct = string(hd.Value)
				}
			}
			rep, err := h.Registry.DecodeReply(r.Value, ct)
			if err != nil {
				continue
			}
			switch rep.CommandID {
			case "forged-1":
				forgedRep = &rep
			case `transfer:"ann":3:credit`:
				legRep = &rep
			}
		}
	}
	if forgedRep.Status != wire.StatusInvalid || forgedRep.Code != topology.CodeBadReplyAddress {
		t.Fatalf("forged reply address answered %s %s (%s), want INVALID %s", forgedRep.Status, forgedRep.Code, forgedRep.Message, topology.CodeBadReplyAddress)
	}
	if legRep.Status != wire.StatusAccepted {
		t.Fatalf("credit leg answered %+v, want ACCEPTED", legRep)
	}
}

// Scenario 2: a transfer id reused after its first transfer was refunded,
// and a saga that replays its history (a new group, every command id out of
// the dedupe window): the old refund must not end the new transfer.
func TestReusedTransferIDAndReplayCreateNoMoney(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "", func(c *topology.Config) { c.DedupeWindow = 1 })
	first := startSaga(t, h, "s0")
	openAccounts(t, h, 101, true)
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t2","to":"cid","amount":50}`))
	waitMoney(t, h, 101, func(a map[string]account.Account) bool { return a["ann"].Balance == 101 })
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	// The same id again, to bob, while no saga runs: pending on ann.
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t2","to":"bob","amount":50}`))
	accepted(t, send(t, h, "bob", "Deposit", `{"amount":1}`)) // push the saga's ids out of the window

	startSagaIn(t, h, "kcqrs-transfers-replay", "s1")
	accs := waitMoney(t, h, 102, func(a map[string]account.Account) bool { return a["bob"].Balance == 51 })
	if accs["ann"].Balance != 51 || accs["cid"].Balance != 0 {
		t.Fatalf("after the replay: ann %d (want 51), cid %d (want 0)", accs["ann"].Balance, accs["cid"].Balance)
	}
	if c, r := transferEvents(t, h); c != 1 || r != 1 {
		t.Fatalf("%d completed and %d refunded transfers, want 1 and 1", c, r)
	}
}

// Scenario 3: a credit to an account that does not exist yet is refused and
// refunded; the account opens; a saga replaying its history must not pay
// the credit now.
func TestRefusedThenOpenedReplayPaysNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "", func(c *topology.Config) { c.DedupeWindow = 1 })
	first := startSaga(t, h, "s0")
	accepted(t, send(t, h, "ann", "OpenAccount", `{"owner":"Ann","currency":"EUR"}`))
	accepted(t, send(t, h, "ann", "Deposit", `{"amount":101}`))
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t1","to":"dan","amount":30}`))
	waitMoney(t, h, 101, func(a map[string]account.Account) bool { return a["ann"].Balance == 101 })
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	// OpenAccount still works on an account that refused a credit.
	accepted(t, send(t, h, "dan", "OpenAccount", `{"owner":"Dan","currency":"EUR"}`))
	accepted(t, send(t, h, "dan", "Deposit", `{"amount":1}`))
	accepted(t, send(t, h, "ann", "Deposit", `{"amount":1}`))

	replay := startSagaIn(t, h, "kcqrs-transfers-replay", "s1")
	deadline := time.Now().Add(60 * time.Second)
	for replay.Stats().Debits < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("replay did not see the debit: %+v", replay.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The replayed credit is answered (already decided) before the next
	// command to dan: once dan's deposit is through, the credit was too.
	accepted(t, send(t, h, "dan", "Deposit", `{"amount":1}`))
	accs := waitMoney(t, h, 104, func(a map[string]account.Account) bool { return a["dan"].Balance == 2 })
	if accs["ann"].Balance != 102 {
		t.Fatalf("ann holds %d, want 102", accs["ann"].Balance)
	}
	if c, r := transferEvents(t, h); c != 0 || r != 1 {
		t.Fatalf("%d completed and %d refunded transfers, want 0 and 1", c, r)
	}
}

// loseCommandsOf deletes every record of the commands topic's partition of
// the aggregate id: commands the processor has not read are lost.
func loseCommandsOf(t *testing.T, h *topologytest.Harness, id string) {
	t.Helper()
	p := topology.PartitionFor([]byte(id), partitions)
	ends, err := h.Admin().ListEndOffsets(context.Background(), "commands")
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup("commands", p)
	var del kadm.Offsets
	del.Add(kadm.Offset{Topic: "commands", Partition: p, At: end.Offset})
	if resp, err := h.Admin().DeleteRecords(context.Background(), del); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}
}

// accountOn returns an account id (prefix-n) on partition p.
func accountOn(prefix string, p int32) string {
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if topology.PartitionFor([]byte(id), partitions) == p {
			return id
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Scenario 4: a transfer event the saga cannot decode (a newer schema in a
// rolling upgrade, say) stops its partition, loudly, and is retried; the
// debits behind it wait instead of being skipped, and other partitions go
// on.
func TestUndecodableDebitStopsItsPartition(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	sg := startSaga(t, h, "s0")
	ann, zed := accountOn("ann", 0), accountOn("zed", 1)
	for _, id := range []string{ann, zed, "bob"} {
		accepted(t, send(t, h, id, "OpenAccount", `{"owner":"O","currency":"EUR"}`))
	}
	accepted(t, send(t, h, ann, "Deposit", `{"amount":100}`))
	accepted(t, send(t, h, zed, "Deposit", `{"amount":100}`))

	envs, err := schemas.LoadEnvelopes()
	if err != nil {
		t.Fatal(err)
	}
	codec, err := envs.Codec("Event")
	if err != nil {
		t.Fatal(err)
	}
	// A debit written with a schema this saga does not know.
	unknown := []byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x02, 'x'}
	val, err := codec.Encode(wire.Event{AggregateType: account.Name, AggregateID: "ghost", Version: 1, EventType: "TransferDebited", CommandID: "c", Payload: unknown})
	if err != nil {
		t.Fatal(err)
	}
	produce(t, h, &kgo.Record{Topic: "events", Partition: 0, Key: []byte("ghost"), Value: val})
	accepted(t, send(t, h, ann, "DebitForTransfer", `{"transferId":"behind","to":"bob","amount":30}`))
	accepted(t, send(t, h, zed, "DebitForTransfer", `{"transferId":"beside","to":"bob","amount":20}`))

	// The other partition's transfer completes; the stopped partition is
	// retried (DecodeErrors grows) and its debit stays pending.
	waitFor(t, "the other partition's transfer and two decode errors", func() bool {
		a := accounts(t, h)
		return a["bob"].Balance == 20 && len(a[zed].Pending) == 0 && sg.Stats().DecodeErrors >= 2
	})
	if st := sg.Stats(); st.Stalled != 1 {
		t.Fatalf("stats %+v, want one stalled partition", st)
	}
	if a := accounts(t, h); len(a[ann].Pending) != 1 || a["bob"].Balance != 20 {
		t.Fatalf("the transfer behind the undecodable event moved on: %+v", a)
	}
}

// Scenario 5: a credit command lost before the processor read it (here:
// deleted from the command topic) is sent again, with the same command id,
// once the transfer has waited RedriveAfter.
func TestLostCreditIsRedriven(t *testing.T) {
	t.Parallel()
	h, dir := debitedWhileStopped(t, "bob", false)
	sg := startSagaWith(t, h, saga.Config{InstanceID: "s0", RedriveAfter: 2 * time.Second})
	waitFor(t, "the saga's credit", func() bool { return sg.Stats().Debits == 1 })
	// Lose it: the processor never reads it.
	loseCommandsOf(t, h, "bob")
	h.StartProcessor("w0", dir)
	waitMoney(t, h, 100, func(a map[string]account.Account) bool { return a["bob"].Balance == 50 })
	if st := sg.Stats(); st.Redriven < 1 {
		t.Fatalf("stats %+v: settled without a re-drive", st)
	}
	if c, r := transferEvents(t, h); c != 1 || r != 0 {
		t.Fatalf("%d completed and %d refunded transfers, want 1 and 0", c, r)
	}
}

// Scenario 6: a saga group whose committed offsets are gone (expired while
// the saga was down) does not start over silently: Run stops with
// ErrOffsetsLost, and resumes where the operator says.
func TestLostOffsetsStopTheSaga(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	first := startSaga(t, h, "s0")
	openAccounts(t, h, 100, false)
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t1","to":"bob","amount":10}`))
	waitMoney(t, h, 100, func(a map[string]account.Account) bool { return a["bob"].Balance == 10 })
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the saga group's offsets to be deleted", func() bool {
		resp, err := h.Admin().DeleteGroup(context.Background(), "kcqrs-transfers")
		return err == nil && resp.Err == nil
	})
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t2","to":"bob","amount":20}`))

	again := startSaga(t, h, "s0")
	select {
	case <-again.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the saga runs without its offsets")
	}
	if !errors.Is(again.err, saga.ErrOffsetsLost) {
		t.Fatalf("Run: %v, want ErrOffsetsLost", again.err)
	}
	t.Logf("Run: %v", again.err)
	if a := accounts(t, h); len(a["ann"].Pending) != 1 {
		t.Fatalf("ann: %+v, want t2 pending", a["ann"])
	}
	// The listing (kcqrs transfers) shows it, from the events alone.
	list, err := saga.ListPending(context.Background(), h.Brokers, nil, "events", h.Registry)
	if err != nil || len(list) != 1 || list[0].TransferID != "t2" || list[0].Seq != 2 || list[0].State != saga.StateDebited {
		t.Fatalf("pending transfers %+v, %v; want t2 (seq 2) debited", list, err)
	}
	// The operator resumes from the start: a replay moves no money.
	plan, err := saga.Resume(context.Background(), saga.ResumeOptions{Brokers: h.Brokers, At: "start", DryRun: true})
	if err != nil || len(plan) != partitions {
		t.Fatalf("dry run: %v %v", plan, err)
	}
	if _, err := saga.Resume(context.Background(), saga.ResumeOptions{Brokers: h.Brokers, At: "start"}); err != nil {
		t.Fatal(err)
	}
	startSaga(t, h, "s0")
	waitMoney(t, h, 100, func(a map[string]account.Account) bool { return a["bob"].Balance == 30 })
	if c, r := transferEvents(t, h); c != 2 || r != 0 {
		t.Fatalf("%d completed and %d refunded transfers, want 2 and 0", c, r)
	}
}

// A saga worker that gets a partition reads back the transfers still
// pending before its committed offset: a credit lost while the previous
// owner ran is re-driven by the next one.
func TestRestartedSagaRedrivesOlderTransfers(t *testing.T) {
	t.Parallel()
	h, dir := debitedWhileStopped(t, "bob", false)
	creditAndStop(t, h)
	loseCommandsOf(t, h, "bob")
	next := startSagaWith(t, h, saga.Config{InstanceID: "s1", RedriveAfter: 2 * time.Second})
	h.StartProcessor("w0", dir)
	waitMoney(t, h, 100, func(a map[string]account.Account) bool { return a["bob"].Balance == 50 })
	if st := next.Stats(); st.Redriven < 1 || st.Debits != 0 {
		t.Fatalf("stats %+v: want a re-drive of a debit it never consumed", st)
	}
}
