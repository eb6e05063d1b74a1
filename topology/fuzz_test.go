package topology

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/wire"
)

// FuzzHandle drives one command through every step of handle that does not
// need Kafka: header parsing, the key and size checks, decoding, and the
// domain's decide and evolve on a fresh and on a funded account. Every input
// must end in exactly one of: an INVALID answer (an *invalidError, which
// handle answers and dead-letters), a domain rejection, an internal error
// (answered and dead-lettered), or events that evolve the state. Never a
// panic, never a command without a class.
func FuzzHandle(f *testing.F) {
	reg := testRegistry(f)
	bt := reg.types["account"]
	set := bt.commands["Deposit"].codec
	good, _ := set.Encode(account.Deposit{Amount: 7})
	debit, _ := bt.commands["DebitForTransfer"].codec.Encode(account.DebitForTransfer{TransferID: "t", To: "b", Amount: 3})
	f.Add([]byte("acc"), "Deposit", "", "", "", good)
	f.Add([]byte("acc"), "", "", "", "2026-01-01T00:00:00Z", debit)
	f.Add([]byte("acc"), "DebitForTransfer", wire.ContentTypeJSON, "exists", "", []byte(`{"transferId":"t","to":"b","amount":3}`))
	f.Add([]byte("acc"), "PayOutAndClose", wire.ContentTypeJSON, "2", "", []byte(`{}`))
	f.Add([]byte(""), "OpenAccount", wire.ContentTypeJSON, "no_stream", "", []byte(`{"owner":"x","currency":"EUR"}`))
	f.Add([]byte("acc"), "Withdraw", "text/plain", "any", "yesterday", []byte(`{"amount":-1}`))
	funded := account.Account{Status: account.StatusOpen, Owner: "o", Currency: "EUR", Balance: 100,
		Pending: []account.PendingTransfer{{TransferID: "t", To: "b", Amount: 5}}}
	const maxBytes = 1 << 10
	f.Fuzz(func(t *testing.T, key []byte, typ, ct, expected, deadline string, value []byte) {
		r := &kgo.Record{Key: key, Value: value, Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte("id")},
			{Key: wire.HeaderAggregateType, Value: []byte("account")},
			{Key: wire.HeaderCommandType, Value: []byte(typ)},
			{Key: wire.HeaderContentType, Value: []byte(ct)},
			{Key: wire.HeaderExpectedVersion, Value: []byte(expected)},
		}}
		if deadline != "" {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderDeadline, Value: []byte(deadline)})
		}
		var ie *invalidError
		m, err := parseCommandMeta(r, "command_reply")
		if err == nil && len(r.Key) == 0 {
			err = invalid(CodeMissingKey, "no key")
		}
		if err == nil && len(r.Value) > maxBytes {
			err = invalid(CodeTooLarge, "too large")
		}
		if err != nil {
			if !errors.As(err, &ie) {
				t.Fatalf("header error %v is not answered as INVALID", err)
			}
			if m.reply.topic == "" {
				t.Fatal("reply address lost")
			}
			return
		}
		_ = m.expected.met(0)
		_ = m.deadline.After(time.Time{})
		cmd, err := bt.decodeCommand(&m, value)
		if err != nil {
			if !errors.As(err, &ie) {
				t.Fatalf("decode error %v is not answered as INVALID", err)
			}
			return
		}
		if cmd == nil {
			t.Fatal("nil command without error")
		}
		for _, st := range []any{bt.handler.InitialState(), funded} {
			events, next, err := decideAndEvolve(bt, st, cmd)
			var xe *internalError
			switch _, rejected := aggregates.AsRejection(err); {
			case err == nil:
				if len(events) == 0 || next == nil {
					t.Fatalf("%#v accepted with events %v, state %v", cmd, events, next)
				}
				for _, e := range events {
					if bt.events[e.EventType()] == nil {
						t.Fatalf("event %T is not listed", e)
					}
				}
				a := next.(account.Account)
				if a.Balance < 0 {
					t.Fatalf("%#v on %+v: balance %d", cmd, st, a.Balance)
				}
			case rejected:
			case errors.As(err, &xe):
				t.Fatalf("the account domain failed on %#v: %v", cmd, err)
			default:
				t.Fatalf("unclassified error %v", err)
			}
		}
	})
}

// FuzzRegistryDecoders: events, snapshots and replies are decoded by
// projectors, restores and clients. Arbitrary bytes must give an error or a
// value, never a panic, in either content type.
func FuzzRegistryDecoders(f *testing.F) {
	reg := testRegistry(f)
	bt := reg.types["account"]
	a := &aggState{key: "account/a", id: "a", bt: bt, version: 3,
		state:  account.Account{Status: account.StatusOpen, Balance: 5, Pending: []account.PendingTransfer{{TransferID: "t", To: "b", Amount: 1}}},
		recent: []wire.RecentCommand{{CommandID: "c", Reply: wire.RecentReply{Status: wire.StatusAccepted, Version: 3}}}}
	if snap, err := reg.encodeSnapshot(a); err == nil {
		f.Add(snap)
	}
	if ev, err := reg.encodeEvent(a, 4, "c", time.Unix(0, 0), account.TransferDebited{TransferID: "t", To: "b", Amount: 1, Balance: 4}); err == nil {
		f.Add(ev)
	}
	rep := wire.Reply{CommandID: "c", AggregateType: "account", AggregateID: "a", Status: wire.StatusRejected, Code: "x", Message: "y"}
	if b, err := reg.EncodeReply(rep, wire.ContentTypeAvro); err == nil {
		f.Add(b)
	}
	if b, err := reg.EncodeReply(rep, wire.ContentTypeJSON); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, ev, err := reg.DecodeEvent(data)
		if err == nil && (ev == nil || ev.EventType() != env.EventType) {
			t.Fatalf("event %+v decoded to %#v", env, ev)
		}
		// DecodeEvent's own path for current-schema events agrees with
		// DecodeEvents: the same envelope, the same event, an error for the
		// same inputs.
		env2, evs, err2 := reg.DecodeEvents(data)
		if !reflect.DeepEqual(env, env2) {
			t.Fatalf("DecodeEvent's envelope %+v, DecodeEvents' %+v", env, env2)
		}
		if err == nil && (err2 != nil || len(evs) != 1 || !reflect.DeepEqual(ev, evs[0])) {
			t.Fatalf("DecodeEvent: %#v; DecodeEvents: %#v, %v", ev, evs, err2)
		}
		if err != nil && err2 == nil && len(evs) == 1 {
			t.Fatalf("DecodeEvent failed (%v) where DecodeEvents decoded %#v", err, evs)
		}
		if s, st, err := reg.DecodeSnapshot(data); err == nil && (st == nil || reg.types[s.AggregateType] == nil) {
			t.Fatalf("snapshot %+v decoded to %#v", s, st)
		}
		for _, ct := range []string{wire.ContentTypeAvro, wire.ContentTypeJSON} {
			if r, err := reg.DecodeReply(data, ct); err == nil {
				if _, err := reg.EncodeReply(r, ct); err != nil {
					t.Fatalf("decoded reply %+v does not encode: %v", r, err)
				}
			}
		}
	})
}
