package saga_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// sign is the documented kcqrs_signature (docs/wire-contract.md), written
// here independently of topology.SignCommand: lowercase hex HMAC-SHA256 of
// the length-prefixed command id, aggregate type, key, command type, value.
func sign(key []byte, parts ...[]byte) []byte {
	mac := hmac.New(sha256.New, key)
	for _, p := range parts {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		mac.Write(n[:])
		mac.Write(p)
	}
	return []byte(hex.EncodeToString(mac.Sum(nil)))
}

// creditRecord is a CreditForTransfer written by a client straight to the
// command topic (Avro, as the saga writes it), with sig as kcqrs_signature
// (none when nil).
func creditRecord(t *testing.T, id, target string, c account.CreditForTransfer, sig []byte) *kgo.Record {
	t.Helper()
	set, err := schemas.LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	codec, err := set.Codec(c.CommandType())
	if err != nil {
		t.Fatal(err)
	}
	val, err := codec.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	r := &kgo.Record{
		Topic: "commands", Partition: topology.PartitionFor([]byte(target), partitions), Key: []byte(target), Value: val,
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte(id)},
			{Key: wire.HeaderCommandType, Value: []byte(c.CommandType())},
			{Key: wire.HeaderAggregateType, Value: []byte(account.Name)},
			{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeAvro)},
			{Key: wire.HeaderCorrelationID, Value: []byte(id)},
		},
	}
	if sig != nil {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: "kcqrs_signature", Value: sig})
	}
	return r
}

// repliesTo waits for the replies (default reply topic) of the command ids.
func repliesTo(t *testing.T, h *topologytest.Harness, ids ...string) map[string]wire.Reply {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := map[string]wire.Reply{}
		for _, r := range h.ReadTopic("command_reply") {
			rep, err := h.Registry.DecodeReply(r.Value, wire.ContentTypeAvro)
			if err != nil {
				continue
			}
			got[rep.CommandID] = rep
		}
		missing := 0
		for _, id := range ids {
			if _, ok := got[id]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d replies missing: %+v", missing, len(ids), got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A client writes CreditForTransfer legs itself: unsigned, signed with a
// wrong key, and a real leg's valid signature replayed onto another account
// and another amount. None credits anything: each is answered INVALID
// unsigned_command and dead-lettered. A forged leg that takes the command id
// the saga will use for a real transfer's credit, sent before it, does not
// make the real credit a "duplicate": the transfer still completes.
func TestForgedCreditCreatesNoMoney(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	accepted(t, send(t, h, "ann", "OpenAccount", `{"owner":"Ann","currency":"EUR"}`))
	accepted(t, send(t, h, "ann", "Deposit", `{"amount":100}`))
	accepted(t, send(t, h, "bob", "OpenAccount", `{"owner":"Bob","currency":"EUR"}`))
	accepted(t, send(t, h, "eve", "OpenAccount", `{"owner":"Eve","currency":"EUR"}`))

	// The signature of a genuine leg (as the saga would sign it: the key
	// of the harness), to be replayed onto another target and amount.
	genuine := account.CreditForTransfer{TransferID: "g1", From: "ann", DebitVersion: 3, Amount: 1, Seq: 1}
	gRec := creditRecord(t, "g1-credit", "bob", genuine, nil)
	gSig := sign(signingKey, []byte("g1-credit"), []byte(account.Name), []byte("bob"), []byte(genuine.CommandType()), gRec.Value)

	// The saga's command id of ann's coming transfer t1 (debit at version 3).
	realID := `transfer:"ann":3:credit`
	forged := []*kgo.Record{
		creditRecord(t, "forged-unsigned", "eve", account.CreditForTransfer{TransferID: "x1", From: "ann", DebitVersion: 9, Amount: 1000, Seq: 1}, nil),
		creditRecord(t, "forged-wrong-key", "eve", account.CreditForTransfer{TransferID: "x2", From: "ann", DebitVersion: 9, Amount: 1000, Seq: 2},
			sign([]byte("not the key"), []byte("forged-wrong-key"), []byte(account.Name), []byte("eve"), []byte("CreditForTransfer"), nil)),
		// The genuine signature, on eve for 1000 (and once more on its own
		// command id and target but another amount).
		creditRecord(t, "g1-credit", "eve", account.CreditForTransfer{TransferID: "g1", From: "ann", DebitVersion: 3, Amount: 1000, Seq: 1}, gSig),
		creditRecord(t, "g1-credit-bob", "bob", account.CreditForTransfer{TransferID: "g1", From: "ann", DebitVersion: 3, Amount: 1000, Seq: 1}, gSig),
		// The real leg's command id, on bob, before the saga sends it.
		creditRecord(t, realID, "bob", account.CreditForTransfer{TransferID: "t1", From: "ann", DebitVersion: 3, Amount: 30, Seq: 1}, nil),
	}
	// Avro names its command by its schema: no kcqrs_command_type header.
	noType := creditRecord(t, "forged-no-type", "eve", account.CreditForTransfer{TransferID: "x4", From: "ann", DebitVersion: 9, Amount: 1000, Seq: 4}, nil)
	noType.Headers = slices.DeleteFunc(noType.Headers, func(h kgo.RecordHeader) bool { return h.Key == wire.HeaderCommandType })
	forged = append(forged, noType)
	produce(t, h, forged...)
	// And in JSON, through the client.
	if rep := send(t, h, "eve", "CreditForTransfer", `{"transferId":"x3","from":"ann","debitVersion":9,"amount":1000,"seq":3}`); rep.Status != wire.StatusInvalid || rep.Code != "unsigned_command" {
		t.Errorf("forged JSON credit answered %+v, want INVALID unsigned_command", rep)
	}
	reps := repliesTo(t, h, "forged-unsigned", "forged-wrong-key", "g1-credit", "g1-credit-bob", realID, "forged-no-type")
	for id, rep := range reps {
		if rep.Status != wire.StatusInvalid || rep.Code != "unsigned_command" {
			t.Errorf("forged credit %s answered %+v, want INVALID unsigned_command", id, rep)
		}
	}
	dead := map[string]bool{}
	for _, r := range h.ReadTopic("commands-dlq") {
		for _, hd := range r.Headers {
			if hd.Key == wire.HeaderCommandID {
				dead[string(hd.Value)] = true
			}
		}
	}
	for _, id := range []string{"forged-unsigned", "forged-wrong-key", "g1-credit", "g1-credit-bob", realID, "forged-no-type"} {
		if !dead[id] {
			t.Errorf("forged credit %s not dead-lettered", id)
		}
	}
	if accs := accounts(t, h); total(accs) != 100 || accs["eve"].Balance != 0 || accs["bob"].Balance != 0 {
		t.Fatalf("forged credits moved money: total %d, eve %d, bob %d", total(accs), accs["eve"].Balance, accs["bob"].Balance)
	}

	// The real transfer, with the command id the forger used first.
	startSaga(t, h, "s0")
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t1","to":"bob","amount":30}`)) // ann@3
	accs := waitMoney(t, h, 100, func(a map[string]account.Account) bool { return a["bob"].Balance == 30 })
	if accs["ann"].Balance != 70 || accs["eve"].Balance != 0 {
		t.Fatalf("after the real transfer: ann %d (want 70), eve %d (want 0)", accs["ann"].Balance, accs["eve"].Balance)
	}
	if c, r := transferEvents(t, h); c != 1 || r != 0 {
		t.Fatalf("%d completed and %d refunded transfers, want 1 and 0", c, r)
	}
}
