package topology_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestGarbageKeyRecordIsSkipped: a record in the keys topic that is not a
// key record at all (a misconfigured client wrote it; only ACLs keep them
// out) does not stop every worker at start: it is skipped with an error log
// naming it, and every subject with a real key stays readable. (A record
// that is a key record of another master key still stops the start:
// TestWrongMasterKeyStopsTheStart.)
func TestGarbageKeyRecordIsSkipped(t *testing.T) {
	t.Parallel()
	mk := masterKey(t, 5)
	h := newHarness(t)
	w0 := h.StartProcessor("w0", "", withMaster(mk))
	wantStatus(t, h.Send(cmd("account", "g1", "OpenAccount", `{"owner":"Gina","currency":"EUR"}`)), wire.StatusAccepted, 1)
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	cl := manualProducer(t, h)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range [][]byte{[]byte("garbage"), []byte("kcqrs-key1"), {}} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: h.Topic(topology.DefaultKeysTopic), Partition: 0, Key: []byte("account/junk"), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	h.Registry = reg
	w1 := h.StartProcessor("w1", "", withMaster(mk))
	rep := h.Send(cmd("account", "g1", "Deposit", `{"amount":5}`))
	select {
	case <-w1.Done():
		t.Fatalf("the worker stopped: %v", w1.Err())
	default:
	}
	wantStatus(t, rep, wire.StatusAccepted, 2)
}

// TestEraseOfUnreadableSnapshotWaitsAlone: an erasure of an aggregate whose
// snapshot this build cannot read (a newer release's, a garbled one) takes
// its partition out of the transaction and waits, as any command on it
// does; it must not fail the batch again and again (aborting the work of
// every other partition of the worker each time).
func TestEraseOfUnreadableSnapshotWaitsAlone(t *testing.T) {
	t.Parallel()
	mk := masterKey(t, 6)
	h := newHarness(t)
	h.RequireEmbedded()
	dir := t.TempDir()
	garbled, fresh := idOn("garbled", 3), idOn("fresh", 2)
	w0 := h.StartProcessor("w0", dir, withMaster(mk))
	wantStatus(t, h.Send(cmd("account", garbled, "OpenAccount", `{"owner":"Gus","currency":"EUR"}`)), wire.StatusAccepted, 1)
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	cl := manualProducer(t, h)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bogus := append([]byte{0xC3, 0x01, 9, 9, 9, 9, 9, 9, 9, 9}, 0, 1, 2) // a schema no build knows
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: h.Topic("snapshots-changelog"), Partition: 3, Key: []byte("account/" + garbled), Value: bogus}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	h.Registry = reg
	w1 := h.StartProcessor("w0", dir, withMaster(mk))
	if err := cl.ProduceSync(ctx, eraseRecord(t, h, mk, garbled)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the partition of the unreadable snapshot to wait", func() bool { return !w1.Ready() })
	for i := 0; i < 5; i++ {
		wantStatus(t, h.Send(cmd("account", fresh, "Deposit", `{"amount":1}`)), wire.StatusRejected, 0)
	}
	if st := w1.Stats(); st.Aborted != 0 {
		t.Fatalf("%d transactions aborted: the erasure failed the batch instead of waiting alone", st.Aborted)
	}
}

// TestKeyRecordAfterErasureIsIgnored: erasure is irreversible. A key record
// for an erased subject that appears after its erasure marker (a client
// that holds the master key and writes the keys topic by mistake, a mirror
// of another cluster) must not revive the subject: a worker starting on
// that topic still rejects it as erased.
func TestKeyRecordAfterErasureIsIgnored(t *testing.T) {
	t.Parallel()
	mk := masterKey(t, 7)
	h := newHarness(t)
	w0 := h.StartProcessor("w0", "", withMaster(mk))
	wantStatus(t, h.Send(cmd("account", "gone", "OpenAccount", `{"owner":"Gone Gail","currency":"EUR"}`)), wire.StatusAccepted, 1)
	cl := manualProducer(t, h)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, eraseRecord(t, h, mk, "gone")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the erasure", func() bool {
		return h.Send(cmd("account", "gone", "Deposit", `{"amount":1}`)).Code == topology.CodeErased
	})
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	k, err := shred.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	v, err := shred.EncodeKeyRecord(mk, "account/gone", k)
	if err != nil {
		t.Fatal(err)
	}
	part := topology.PartitionFor([]byte("gone"), partitions)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: h.Topic(topology.DefaultKeysTopic), Partition: part, Key: []byte("account/gone"), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if h.Registry, err = examples.Registry(); err != nil {
		t.Fatal(err)
	}
	h.StartProcessor("w1", "", withMaster(mk))
	if rep := h.Send(cmd("account", "gone", "Deposit", `{"amount":1}`)); rep.Code != topology.CodeErased {
		t.Fatalf("after a key record following the erasure: %+v", rep)
	}
}

// TestEraseRacingCommands: deposits sent concurrently with the erasure (many
// land in its batch): each is either accepted before it (a version at or
// below the erasure's) or rejected erased, the erased snapshot holds exactly
// the accepted money, a second erasure is accepted again without effect,
// and an erasure of an aggregate that never existed keeps it from ever
// being created.
func TestEraseRacingCommands(t *testing.T) {
	t.Parallel()
	mk := masterKey(t, 8)
	h := newHarness(t)
	h.StartProcessor("w0", "", withMaster(mk))
	wantStatus(t, h.Send(cmd("account", "race", "OpenAccount", `{"owner":"Race Rita","currency":"EUR"}`)), wire.StatusAccepted, 1)
	token, err := shred.EraseToken(mk, "account/race")
	if err != nil {
		t.Fatal(err)
	}
	erase := client.Command{AggregateType: "account", AggregateID: "race", Type: topology.EraseCommandType, Avro: token}
	var deps []<-chan sendResult
	var er <-chan sendResult
	for i := 0; i < 8; i++ {
		if i == 4 {
			er = sendAsync(h, erase, time.Minute)
		}
		deps = append(deps, sendAsync(h, cmd("account", "race", "Deposit", `{"amount":1}`), time.Minute))
	}
	e := <-er
	if e.err != nil || e.rep.Status != wire.StatusAccepted {
		t.Fatalf("erasure: %+v %v", e.rep, e.err)
	}
	var paid int64
	for _, ch := range deps {
		d := <-ch
		switch {
		case d.err != nil:
			t.Fatal(d.err)
		case d.rep.Status == wire.StatusAccepted && d.rep.Version <= e.rep.Version:
			paid++
		case d.rep.Status == wire.StatusRejected && d.rep.Code == topology.CodeErased:
		default:
			t.Fatalf("deposit racing the erasure (at version %d): %+v", e.rep.Version, d.rep)
		}
	}
	if e.rep.Version != 1+paid {
		t.Fatalf("erased at version %d after %d accepted deposits", e.rep.Version, paid)
	}
	if rep := h.Send(erase); rep.Status != wire.StatusAccepted || rep.Version != e.rep.Version {
		t.Fatalf("second erasure: %+v", rep)
	}
	var found bool
	for _, r := range h.ReadTopic("snapshots-changelog") {
		if string(r.Key) != "account/race" {
			continue
		}
		s, st, err := h.Registry.DecodeSnapshot(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		a := st.(account.Account)
		found = s.Version == e.rep.Version && a.Balance == paid && a.Owner == shred.Erased && len(s.Recent) == 0
	}
	if !found {
		t.Fatal("the last snapshot of the erased account is not its fold without personal data")
	}
	never, err := shred.EraseToken(mk, "account/never")
	if err != nil {
		t.Fatal(err)
	}
	if rep := h.Send(client.Command{AggregateType: "account", AggregateID: "never", Type: topology.EraseCommandType, Avro: never}); rep.Status != wire.StatusAccepted {
		t.Fatalf("erasure of an aggregate that never existed: %+v", rep)
	}
	if rep := h.Send(cmd("account", "never", "OpenAccount", `{"owner":"Nev","currency":"EUR"}`)); rep.Code != topology.CodeErased {
		t.Fatalf("opening an erased id: %+v", rep)
	}
}
