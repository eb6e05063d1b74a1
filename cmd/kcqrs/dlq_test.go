package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/folder"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/internal/deadletter"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// repliesTo returns the replies on the reply topic to command id, in order.
func repliesTo(t *testing.T, h *topologytest.Harness, id string) []wire.Reply {
	t.Helper()
	var out []wire.Reply
	for _, r := range h.ReadTopic("command_reply") {
		if header(r, wire.HeaderCommandID) != id {
			continue
		}
		rep, err := h.Registry.DecodeReply(r.Value, header(r, wire.HeaderContentType))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rep)
	}
	return out
}

// waitReplies waits until command id has n replies.
func waitReplies(t *testing.T, h *topologytest.Harness, id string, n int) []wire.Reply {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		reps := repliesTo(t, h, id)
		if len(reps) >= n {
			return reps
		}
		if time.Now().After(deadline) {
			t.Fatalf("command %s: %d replies, want %d: %+v", id, len(reps), n, reps)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDLQListShowRedrive: commands dead-lettered by a processor that did
// not serve their aggregate type are listed and shown with their error
// headers; a dry run sends nothing; once a processor serves the type, a
// re-drive applies the command under its original id, and a second re-drive
// of the same dead letter is answered as a duplicate: one event, not two.
func TestDLQListShowRedrive(t *testing.T) {
	foldersOnly, err := topology.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	fol, err := schemas.LoadFolder()
	if err != nil {
		t.Fatal(err)
	}
	if err := foldersOnly.Register(folder.Type, fol); err != nil {
		t.Fatal(err)
	}
	h := topologytest.New(t, foldersOnly, 2)
	w0 := h.StartProcessor("w0", "")
	t.Setenv("KCQRS_BROKERS", strings.Join(h.Brokers, ","))

	open := client.Command{AggregateType: "account", AggregateID: "dl-1", Type: "OpenAccount", ID: "open-dl-1", JSON: []byte(`{"owner":"Ann","currency":"EUR"}`)}
	if rep := h.Send(open); rep.Status != wire.StatusInvalid || rep.Code != topology.CodeUnknownAggregate {
		t.Fatalf("account command on a folders-only processor: %+v", rep)
	}
	bad := client.Command{AggregateType: "folder", AggregateID: "f-1", Type: "CreateFolder", JSON: []byte(`{"name":7}`)}
	if rep := h.Send(bad); rep.Status != wire.StatusInvalid || rep.Code != topology.CodeUndecodable {
		t.Fatalf("bad folder command: %+v", rep)
	}

	out, code, _ := run(t, runDLQ, "list")
	if code != exitOK || !strings.Contains(out, "open-dl-1") || !strings.Contains(out, "unknown_aggregate_type") || !strings.Contains(out, "undecodable") {
		t.Fatalf("dlq list: exit %d\n%s", code, out)
	}
	out, code, _ = run(t, runDLQ, "show", "--code", topology.CodeUnknownAggregate)
	var shown []dlqEntry
	if err := json.Unmarshal([]byte(out), &shown); code != exitOK || err != nil || len(shown) != 1 {
		t.Fatalf("dlq show: exit %d, %v\n%s", code, err, out)
	}
	e := shown[0]
	if e.Code != topology.CodeUnknownAggregate || strings.Count(e.Error, e.Code) != 1 || e.Source.Topic != "commands" || e.Source.Offset == "" ||
		e.Key == nil || *e.Key != "dl-1" || e.Value == nil || !strings.Contains(*e.Value, "Ann") {
		t.Fatalf("dlq show: %+v", e)
	}
	at := []string{"--at", itoa32(e.Partition) + ":" + itoa64(e.Offset)}

	if _, code, _ := run(t, runDLQ, "redrive"); code != exitUsage {
		t.Fatalf("redrive without a choice: exit %d, want %d", code, exitUsage)
	}
	out, code, _ = run(t, runDLQ, append([]string{"redrive"}, at...)...)
	if code != exitOK || !strings.Contains(out, "dry run") || !strings.Contains(out, "open-dl-1") {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	if _, code, _ := run(t, runDLQ, "show", "--at", "0:999999"); code == exitOK {
		t.Fatal("show at a missing position succeeded")
	}

	// A processor that serves accounts takes over.
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	full, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	h.Registry = full
	h.StartProcessor("w1", "")
	if reps := repliesTo(t, h, "open-dl-1"); len(reps) != 1 {
		t.Fatalf("the dry run sent something: replies %+v", reps)
	}

	for i, want := range []bool{false, true} {
		out, code, _ = run(t, runDLQ, append([]string{"redrive", "--execute"}, at...)...)
		if code != exitOK || !strings.Contains(out, "re-drove 1") {
			t.Fatalf("redrive %d: exit %d\n%s", i+1, code, out)
		}
		reps := waitReplies(t, h, "open-dl-1", i+2)
		last := reps[len(reps)-1]
		if last.Status != wire.StatusAccepted || last.Version != 1 || last.Duplicate != want {
			t.Fatalf("redrive %d: reply %+v, want ACCEPTED at version 1, duplicate %v", i+1, last, want)
		}
	}
	n := 0
	for _, r := range h.ReadTopic("events") {
		if string(r.Key) == "dl-1" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d events for dl-1 after two re-drives, want 1", n)
	}
}

func itoa32(v int32) string { return itoa64(int64(v)) }

func itoa64(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestRedrivenRecord: a re-driven command keeps its key, value and every
// header but the kcqrs_dlq_* ones (binary ones byte for byte), on the
// partition murmur2 picks.
func TestRedrivenRecord(t *testing.T) {
	dl := &kgo.Record{Key: []byte("acc-9"), Value: []byte(`{"amount":1}`), Headers: []kgo.RecordHeader{
		{Key: wire.HeaderCommandID, Value: []byte("c-9")},
		{Key: wire.HeaderCorrelationID, Value: []byte{0, 0xff, 1}},
		{Key: wire.HeaderReplyPartition, Value: []byte{0, 0, 0, 2}},
		{Key: wire.HeaderDLQError, Value: []byte("undecodable: x: y")},
		{Key: wire.HeaderDLQTopic, Value: []byte("commands")},
		{Key: wire.HeaderDLQPartition, Value: []byte("3")},
		{Key: wire.HeaderDLQOffset, Value: []byte("17")},
	}}
	r := deadletter.Redriven(dl, "cmds", 6)
	if r.Topic != "cmds" || string(r.Key) != "acc-9" || string(r.Value) != `{"amount":1}` || r.Partition != topology.PartitionFor([]byte("acc-9"), 6) {
		t.Fatalf("re-driven record %+v", r)
	}
	if len(r.Headers) != 3 || string(r.Headers[1].Value) != "\x00\xff\x01" || string(r.Headers[2].Value) != "\x00\x00\x00\x02" {
		t.Fatalf("headers %+v, want the command's three", r.Headers)
	}
	if c := errorCode(header(dl, wire.HeaderDLQError)); c != "undecodable" {
		t.Fatalf("code %q", c)
	}
	if c := errorCode(`key "a: b" belongs to partition 1`); c != "" {
		t.Fatalf("code %q of a message without one", c)
	}
}
