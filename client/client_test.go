package client

import (
	"context"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/wire"
)

func TestRecordCarriesTheWireContract(t *testing.T) {
	c := &Client{cfg: Config{CommandTopic: "cmds", ReplyTopic: "replies"}}
	deadline := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	rec, corr, err := c.record(Command{
		AggregateType: "account", AggregateID: "a1", Type: "Deposit", ID: "c-1",
		ExpectedVersion: "7", Deadline: deadline, JSON: []byte(`{"amount":1}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Topic != "cmds" || string(rec.Key) != "a1" || corr == "" {
		t.Fatalf("record %+v corr %q", rec, corr)
	}
	want := map[string]string{
		wire.HeaderCommandID:       "c-1",
		wire.HeaderCommandType:     "Deposit",
		wire.HeaderAggregateType:   "account",
		wire.HeaderContentType:     wire.ContentTypeJSON,
		wire.HeaderCorrelationID:   corr,
		wire.HeaderReplyTopic:      "replies",
		wire.HeaderExpectedVersion: "7",
		wire.HeaderDeadline:        "2030-01-02T03:04:05Z",
	}
	got := map[string]string{}
	for _, h := range rec.Headers {
		got[h.Key] = string(h.Value)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("header %s = %q, want %q", k, got[k], v)
		}
	}
}

func TestRecordRejectsIncompleteCommands(t *testing.T) {
	c := &Client{}
	for name, cmd := range map[string]Command{
		"no aggregate type": {AggregateID: "a", Type: "T", JSON: []byte("{}")},
		"no id":             {AggregateType: "x", Type: "T", JSON: []byte("{}")},
		"no type":           {AggregateType: "x", AggregateID: "a", JSON: []byte("{}")},
		"no payload":        {AggregateType: "x", AggregateID: "a", Type: "T"},
		"two payloads":      {AggregateType: "x", AggregateID: "a", Type: "T", JSON: []byte("{}"), Avro: []byte{0xc3, 1}},
	} {
		if _, _, err := c.record(cmd); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestNewNeedsBrokers(t *testing.T) {
	if _, err := New(context.Background(), Config{}); err == nil {
		t.Fatal("New without brokers succeeded")
	}
}

// TestRecordAllocations: the record, its headers and their bytes cost a
// fixed, small number of allocations (a string and a slice per header
// value before).
func TestRecordAllocations(t *testing.T) {
	c := &Client{cfg: Config{CommandTopic: "cmds", ReplyTopic: "replies"}, corrPrefix: NewID() + "-"}
	cmd := Command{AggregateType: "account", AggregateID: "a1", Type: "Deposit", ID: "c-1", Avro: []byte{0xc3, 1}}
	if n := testing.AllocsPerRun(100, func() { _ = c.fill(new(waiter), cmd) }); n > 2 {
		t.Fatalf("%v allocations per record, want at most 2 (the waiter with the record, the bytes)", n)
	}
}

// TestCorrelationIDs: a reply matches only this client's ids, by their
// counter; another client's or a malformed one matches nothing.
func TestCorrelationIDs(t *testing.T) {
	c := &Client{cfg: Config{CommandTopic: "cmds", ReplyTopic: "replies"}, corrPrefix: NewID() + "-"}
	other := &Client{corrPrefix: NewID() + "-"}
	for i := 0; i < 1000; i++ {
		_, corr, err := c.record(Command{AggregateType: "a", AggregateID: "x", Type: "T", JSON: []byte("{}")})
		if err != nil {
			t.Fatal(err)
		}
		seq, ok := c.parseCorr([]byte(corr))
		if !ok || seq != uint64(i+1) {
			t.Fatalf("%q parsed as %d %v, want %d", corr, seq, ok, i+1)
		}
		if _, ok := other.parseCorr([]byte(corr)); ok {
			t.Fatalf("another client matched %q", corr)
		}
	}
	for _, bad := range []string{"", c.corrPrefix, c.corrPrefix + "A", c.corrPrefix + "-1", c.corrPrefix + "zzzzzzzzzzzzzz", "x" + c.corrPrefix[1:] + "1"} {
		if _, ok := c.parseCorr([]byte(bad)); ok {
			t.Errorf("%q matched", bad)
		}
	}
	// Without an id, a command's id is its correlation id.
	rec, corr, err := c.record(Command{AggregateType: "a", AggregateID: "x", Type: "T", JSON: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range rec.Headers {
		if h.Key == wire.HeaderCommandID && string(h.Value) != corr {
			t.Fatalf("default command id %q, correlation id %q", h.Value, corr)
		}
	}
}
