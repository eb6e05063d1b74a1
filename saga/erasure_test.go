package saga_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// eraseAccount erases account id (a valid erasure token of mk), retrying
// through injected broker faults until the processor answers it.
func eraseAccount(t *testing.T, h *topologytest.Harness, mk shred.KeyWrapper, id string) {
	t.Helper()
	token, err := shred.EraseToken(mk, account.Name+"/"+id)
	if err != nil {
		t.Fatal(err)
	}
	c := client.Command{ID: "erase-" + id, AggregateType: account.Name, AggregateID: id, Type: topology.EraseCommandType, Avro: token}
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		rep, err := h.Client().Send(ctx, c)
		cancel()
		if err == nil {
			if rep.Status != wire.StatusAccepted {
				t.Fatalf("erasure of %s: %+v", id, rep)
			}
			return
		}
		if attempt == 8 {
			t.Fatalf("erasure of %s: no reply: %v", id, err)
		}
	}
}

// Transfers to or from an account erased while they run end, with no money
// created or lost: a credit to an erased target is refused (an event on
// it, code erased) and refunded to the source; the completion or refund of a
// transfer whose source was erased ends it on the source (its balance is
// not personal data and still folds).
func TestTransfersOfErasedAccountsEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mk, err := shred.NewMasterKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	// A dedupe window of 1: the replay below is decided by the accounts'
	// state (credit marks, pending transfers), not by remembered replies.
	h.StartProcessor("w0", t.TempDir(), func(c *topology.Config) { c.Personal, c.DedupeWindow = mk, 1 })
	openAccounts(t, h, 100, false)
	for _, id := range []string{"cid", "dan"} {
		accepted(t, send(t, h, id, "OpenAccount", `{"owner":"Erase Me `+id+`","currency":"EUR"}`))
		accepted(t, send(t, h, id, "Deposit", `{"amount":100}`))
	}
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t1","to":"bob","amount":30}`)) // target erased
	accepted(t, send(t, h, "cid", "DebitForTransfer", `{"transferId":"t2","to":"ann","amount":40}`)) // source erased, credited
	accepted(t, send(t, h, "dan", "DebitForTransfer", `{"transferId":"t3","to":"bob","amount":10}`)) // both erased, refused
	for _, id := range []string{"bob", "cid", "dan"} {
		eraseAccount(t, h, mk, id)
	}
	// A new transfer from an erased account does not start.
	if rep := send(t, h, "cid", "DebitForTransfer", `{"transferId":"t4","to":"ann","amount":1}`); rep.Code != topology.CodeErased {
		t.Fatalf("debit on an erased account: %+v", rep)
	}
	first := startSagaWith(t, h, saga.Config{InstanceID: "s0", RedriveAfter: 2 * time.Second})
	accs := waitMoney(t, h, 300, func(a map[string]account.Account) bool {
		return a["ann"].Balance == 140 && a["cid"].Balance == 60 && a["dan"].Balance == 100 && a["bob"].Balance == 0
	})
	for _, id := range []string{"bob", "cid", "dan"} {
		if o := accs[id].Owner; o != shred.Erased {
			t.Fatalf("%s's snapshot after erasure holds owner %q", id, o)
		}
	}
	if c, r := transferEvents(t, h); c != 1 || r != 2 {
		t.Fatalf("%d completed and %d refunded transfers, want 1 and 2", c, r)
	}

	// A saga replaying the whole history (a new group) re-sends every leg:
	// the erased accounts kept their credit marks and pending transfers, so
	// a credit decided before (paid or refused) is not refused again as
	// erased (which would refund it a second time), and an ended transfer
	// is not ended again.
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	replay := startSagaWith(t, h, saga.Config{Group: "kcqrs-transfers-replay", InstanceID: "s1", RedriveAfter: time.Hour})
	waitFor(t, "the replay", func() bool { return replay.Stats().Debits >= 3 })
	// Commands after the replayed legs, on every partition they went to:
	// once answered, the legs before them were decided.
	for _, id := range []string{"bob", "cid", "dan"} {
		if rep := send(t, h, id, "Deposit", `{"amount":1}`); rep.Code != topology.CodeErased {
			t.Fatalf("deposit on erased %s: %+v", id, rep)
		}
	}
	accepted(t, send(t, h, "ann", "Deposit", `{"amount":1}`))
	after := waitMoney(t, h, 301, func(map[string]account.Account) bool { return true })
	for id, want := range map[string]int64{"ann": 141, "bob": 0, "cid": 60, "dan": 100} {
		if after[id].Balance != want {
			t.Fatalf("%s: balance %d after the replay, want %d", id, after[id].Balance, want)
		}
	}
	if c, r := transferEvents(t, h); c != 1 || r != 2 {
		t.Fatalf("after the replay: %d completed and %d refunded transfers, want 1 and 2", c, r)
	}
}

// An account erased by an earlier release had its snapshot tombstoned: its
// version is unknown to the processor. A leg to it must not write an event
// at version 1 again (a duplicate version breaks every fold of its
// history): it is rejected erased, as before, and the transfer waits for an
// operator.
func TestLegToErasedAccountWithoutSnapshotWritesNoDuplicateVersion(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mk, err := shred.NewMasterKey(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	withKey := func(c *topology.Config) { c.Personal = mk }
	proc := h.StartProcessor("w0", t.TempDir(), withKey)
	openAccounts(t, h, 100, false)
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t1","to":"bob","amount":30}`))
	eraseAccount(t, h, mk, "bob")
	if err := proc.Stop(); err != nil {
		t.Fatal(err)
	}
	// The earlier release's erasure: a tombstone of the snapshot.
	produce(t, h, &kgo.Record{Topic: "snapshots-changelog", Partition: topology.PartitionFor([]byte("bob"), partitions), Key: []byte("account/bob")})
	h.StartProcessor("w1", t.TempDir(), withKey)
	sg := startSagaWith(t, h, saga.Config{InstanceID: "s0", RedriveAfter: time.Hour})
	waitFor(t, "the saga's credit", func() bool { return sg.Stats().Debits == 1 })
	// Answered after the credit before it on bob's partition.
	if rep := send(t, h, "bob", "Deposit", `{"amount":1}`); rep.Code != topology.CodeErased {
		t.Fatalf("deposit on erased bob: %+v", rep)
	}
	seen := map[int64]bool{}
	for _, r := range h.ReadTopic("events") {
		env, _, err := h.Registry.DecodeEvent(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if env.AggregateID != "bob" {
			continue
		}
		if seen[env.Version] {
			t.Fatalf("bob has two events at version %d", env.Version)
		}
		seen[env.Version] = true
	}
}
