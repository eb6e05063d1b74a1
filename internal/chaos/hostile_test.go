package chaos

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/wire"
)

// checkHostile finds every kind of record the topology must never write:
// a reply in events, in the changelog and in commands, a dead letter of a
// command that is not hostile, a saga reply to no saga command, and a reply
// to a hostile command in a topic created during the run; the clean records
// beside them are not reported.
func TestCheckHostileFindsForeignRecords(t *testing.T) {
	c, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r := &run{o: Options{Partitions: 1, Log: io.Discard}, brokers: c.ListenAddrs(), adm: kadm.NewClient(cl)}
	if _, err := r.adm.CreateTopics(ctx, 1, 1, nil, "commands", "events", "snapshots-changelog", "command_reply", "commands-dlq", "transfer-replies"); err != nil {
		t.Fatal(err)
	}
	r.noteTopics(ctx)
	// A topic that appears during the run (a forged reply created it).
	if _, err := r.adm.CreateTopics(ctx, 1, 1, nil, "forged-reply-topic"); err != nil {
		t.Fatal(err)
	}
	h := func(kv ...string) []kgo.RecordHeader {
		var out []kgo.RecordHeader
		for i := 0; i < len(kv); i += 2 {
			out = append(out, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return out
	}
	reply := h(wire.HeaderCorrelationID, "corr-hostile-1", wire.HeaderContentType, wire.ContentTypeJSON)
	recs := []*kgo.Record{
		// Clean: a command of the saga and its reply, a dead-lettered
		// hostile command, a hostile command's reply on command_reply.
		{Topic: "commands", Value: []byte("{}"), Headers: h(wire.HeaderCommandID, "t1:credit", wire.HeaderCommandType, "CreditForTransfer", wire.HeaderCorrelationID, "saga-1")},
		{Topic: "command_reply", Value: []byte("{}"), Headers: h(wire.HeaderCorrelationID, "saga-1")},
		{Topic: "commands-dlq", Value: []byte("{}"), Headers: h(wire.HeaderCommandID, "hostile-1", wire.HeaderDLQError, "too large", wire.HeaderCorrelationID, "corr-hostile-1")},
		{Topic: "command_reply", Value: []byte("{}"), Headers: reply},
		// Foreign, one of each kind.
		{Topic: "events", Value: []byte("not an event"), Headers: reply},
		{Topic: "snapshots-changelog", Key: []byte("account/v"), Value: []byte("not a snapshot"), Headers: reply},
		{Topic: "commands", Value: []byte("{}"), Headers: reply},
		{Topic: "commands-dlq", Value: []byte("{}"), Headers: h(wire.HeaderCommandID, "c0-1", wire.HeaderDLQError, "?")},
		// The saga's retired reply topic is internal: nothing may be there,
		// not even the reply to a hostile command.
		{Topic: "transfer-replies", Value: []byte("{}"), Headers: h(wire.HeaderCorrelationID, "corr-hostile-2")},
		{Topic: "forged-reply-topic", Value: []byte("{}"), Headers: reply},
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := r.checkHostile(ctx); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(r.sum.Violations, "\n")
	for _, want := range []string{
		"foreign record in events", "foreign record in snapshots-changelog", "foreign record in commands ",
		"foreign record in commands-dlq", "foreign record in transfer-replies", "topic forged-reply-topic was created",
		"foreign record in forged-reply-topic",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no violation %q in:\n%s", want, all)
		}
	}
	if strings.Contains(all, "command_reply") || strings.Contains(all, "saga-1") {
		t.Errorf("a clean record reported:\n%s", all)
	}
}
