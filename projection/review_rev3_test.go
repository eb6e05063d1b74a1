package projection

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/wire"
)

// TestHugeDeadLettersBlockNothing: a record forged into the events topic
// must be dead-lettered and never stop the accounts group. A dead letter
// copies the event, its headers and a reason that may quote the event, and
// only the key and value were weighed against the record limit: an
// aggregate id of 240 KB of \x01 under another key is a 240 KB event, but
// its reason ("event of aggregate %q ...") is 960 KB; an event of an
// unknown type with 450 KB of headers just under the producer's limit is
// over it once the dead-letter headers are added. Either dead letter failed
// its produce (MESSAGE_TOO_LARGE), the group stopped without committing,
// and the event came again at every restart: every account of the
// partition stopped.
func TestHugeDeadLettersBlockNothing(t *testing.T) {
	e := newEnv(t)
	var next string
	for i := 0; next == ""; i++ {
		if id := fmt.Sprintf("acc-%d", i); partitionOf(id) == partitionOf("k1") {
			next = id
		}
	}
	bigID := strings.Repeat("\x01", 240<<10)
	e.produce(rec("k1", e.encode("account", bigID, 1, "", account.AccountOpened{Owner: "ann", Currency: "EUR"})))
	// An event of an unknown type under its own key, as large as the
	// producer takes.
	var hs []kgo.RecordHeader
	for i := range 45 {
		hs = append(hs, kgo.RecordHeader{Key: fmt.Sprintf("h%d", i), Value: make([]byte, 10<<10)})
	}
	produced := false
	for pad := 1_000_012 - 45*(10<<10) - 100; pad > 500<<10 && !produced; pad -= 32 {
		r := rec("k1", e.encodePayload("k1", "Nope", make([]byte, pad)))
		r.Topic, r.Headers = "events", hs
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		produced = e.cl.ProduceSync(ctx, r).FirstErr() == nil
		cancel()
	}
	if !produced {
		t.Fatal("the large event was never taken")
	}
	e.deadLettersFitAndTheGroupRuns(t, next, 2)
}

// encodePayload is an event of type eventType of account id with payload
// as its (undecodable) payload.
func (e *env) encodePayload(id, eventType string, payload []byte) []byte {
	e.t.Helper()
	b, err := e.evCodec.Encode(wire.Event{AggregateType: "account", AggregateID: id, Version: 1, EventType: eventType,
		CommandID: "cmd-" + id, TimestampMillis: time.Now().UnixMilli(), Payload: payload})
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func headerBytes(hs []kgo.RecordHeader) int {
	n := 0
	for _, h := range hs {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// TestOversizedCurrencyBlocksNothing: a forged event may open an account
// in a currency of 153,000 '<': its entry (the currency escaped to
// \u003c, 918 KB) passed the entry-size check, but its currency counters
// are a record of the currency as key and escaped as value, 1.07 MB: the
// produce failed and the accounts group stopped at every start. Such an
// event is dead-lettered like an oversized entry.
func TestOversizedCurrencyBlocksNothing(t *testing.T) {
	e := newEnv(t)
	var next string
	for i := 0; next == ""; i++ {
		if id := fmt.Sprintf("acc-%d", i); partitionOf(id) == partitionOf("k1") && id != "k1" {
			next = id
		}
	}
	e.produce(rec("k1", e.encode("account", "k1", 1, "", account.AccountOpened{Owner: "ann", Currency: strings.Repeat("<", 153_000)})))
	cfg := e.config(t.TempDir(), 1)
	p := e.startProjector(cfg)
	e.produce(rec(next, e.encode("account", next, 1, "", account.AccountOpened{Owner: "bo", Currency: "EUR"})))
	s := e.startServer(t.TempDir(), 1)
	eventually(t, "the account after the forged event", func() (bool, string) {
		select {
		case err := <-p.done:
			t.Fatalf("the projector stopped: %v", err)
		default:
		}
		a, err := s.Active().Account(next)
		return err == nil && a != nil && p.Stats().DeadLetters == 1, fmt.Sprintf("not folded yet; stats %+v", p.Stats())
	})
	select {
	case err := <-p.done:
		t.Fatalf("the projector stopped: %v", err)
	case <-time.After(time.Second):
	}
}

// TestHugeKeyDeadLetterBlocksNothing: an event forged under a key of
// 995,000 bytes fits the producer's limit; its dead letter (the key, and a
// reason that quotes the key, capped at 8 KB) did not, and the accounts
// group stopped at every start.
func TestHugeKeyDeadLetterBlocksNothing(t *testing.T) {
	e := newEnv(t)
	key := strings.Repeat("k", 995_000)
	var next string
	for i := 0; next == ""; i++ {
		if id := fmt.Sprintf("acc-%d", i); partitionOf(id) == partitionOf(key) {
			next = id
		}
	}
	e.produce(rec(key, e.encode("account", "x", 1, "", account.AccountOpened{Owner: "ann", Currency: "EUR"})))
	e.deadLettersFitAndTheGroupRuns(t, next, 1)
}

// deadLettersFitAndTheGroupRuns starts a projector on the forged events
// produced so far and an account next behind them: the n dead letters are
// written, each within a record's size, and the group goes on to fold next.
func (e *env) deadLettersFitAndTheGroupRuns(t *testing.T, next string, n int) {
	t.Helper()
	cfg := e.config(t.TempDir(), 1)
	p := e.startProjector(cfg)
	e.produce(rec(next, e.encode("account", next, 1, "", account.AccountOpened{Owner: "bo", Currency: "EUR"})))
	for _, r := range readAll(t, e.brokers, string(DeadLetters(cfg.Names.withDefaults().AccountsGroup())), n) {
		if size := len(r.Key) + len(r.Value) + headerBytes(r.Headers); size > maxEntryRecordBytes+64<<10 {
			t.Errorf("dead letter of %d bytes", size)
		}
	}
	s := e.startServer(t.TempDir(), 1)
	eventually(t, "the account after the forged events", func() (bool, string) {
		a, err := s.Active().Account(next)
		return err == nil && a != nil, fmt.Sprintf("not folded yet; stats %+v", p.Stats())
	})
	select {
	case err := <-p.done:
		t.Fatalf("the projector stopped: %v", err)
	case <-time.After(time.Second):
	}
}
