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
