package topology_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// An adversarial review of the edges of issue 12 (reply routing, output
// sizes, bounded state). Each test here failed on the code it was written
// against; the fix is named in its comment.

// A reply shrunk because it did not fit (a huge key) cut the aggregate id
// at byte 256, in the middle of a rune: an Avro string that is not UTF-8.
// Fixed: the shrunk fields are cut at a rune boundary (wire.Truncate).
func TestShrunkReplyStaysValidUTF8(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	key := strings.Repeat("€", 200_000) // 600 KB, 3 bytes a rune: 256 is mid-rune
	rec := commandRecord(key, topology.PartitionFor([]byte(key), partitions), "OpenAccount", `{"owner":"O","currency":"EUR"}`)
	// The reply in Avro: the JSON encoder would hide the broken rune as U+FFFD.
	for i := range rec.Headers {
		if rec.Headers[i].Key == wire.HeaderContentType {
			rec.Headers = append(rec.Headers[:i], rec.Headers[i+1:]...)
			break
		}
	}
	set, err := schemas.LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	c, err := set.Codec("OpenAccount")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Value, err = c.Encode(account.OpenAccount{Owner: "O", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	corr := withReply(rec, "", nil)
	produceRaw(t, h, nil, rec)
	rep, r := awaitReply(t, h, "command_reply", corr, 45*time.Second)
	if rep.Status != wire.StatusInvalid || rep.Code != topology.CodeOutputTooLarge || r.Key != nil {
		t.Fatalf("answered %s %s with a %d-byte key", rep.Status, rep.Code, len(r.Key))
	}
	if len(rep.AggregateID) > 256 || !utf8.ValidString(rep.AggregateID) || !utf8.ValidString(rep.Message) {
		t.Fatalf("shrunk reply: aggregate id of %d bytes (valid UTF-8: %v), message valid UTF-8: %v",
			len(rep.AggregateID), utf8.ValidString(rep.AggregateID), utf8.ValidString(rep.Message))
	}
}

// idempotent is the account aggregate with a command that is accepted
// without events on any account, opened or not (a domain's "ensure" or
// "acknowledge" command): Deposit of 0.
var idempotent = aggregates.Type[account.Account]{
	Name: "idem",
	Decide: func(s account.Account, c aggregates.Command) ([]aggregates.Event, error) {
		if d, ok := c.(account.Deposit); ok && d.Amount == 0 {
			return nil, nil
		}
		return account.Decide(s, c)
	},
	Evolve:   account.Evolve,
	Commands: account.Type.Commands,
	Events:   account.Type.Events,
}

// A command accepted with no event on an aggregate that never existed
// wrote a snapshot (version 0, the command remembered) for any id a client
// made up: garbage ids grew the changelog and the stores forever, as
// rejections did before. Fixed: such a command is answered and leaves no
// trace, like a rejection at version 0.
func TestEventlessAcceptOnUnknownAggregatePersistsNothing(t *testing.T) {
	t.Parallel()
	h := harnessWith(t, idempotent)
	h.StartProcessor("w0", "")
	wantStatus(t, h.Send(cmd("account", "real", "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	_, _, before := latestSnapshots(t, h)
	for range 20 {
		wantStatus(t, h.Send(cmd("idem", client.NewID(), "Deposit", `{"amount":0}`)), wire.StatusAccepted, 0)
	}
	// An existing aggregate still remembers such a command (dedupe).
	wantStatus(t, h.Send(cmd("idem", "known", "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	c := cmd("idem", "known", "Deposit", `{"amount":0}`)
	c.ID = client.NewID()
	wantStatus(t, h.Send(c), wire.StatusAccepted, 1)
	if again := h.Send(c); !again.Duplicate {
		t.Fatalf("retry of a remembered command answered %+v, want a duplicate", again)
	}
	wantStatus(t, h.Send(cmd("account", "real", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	snaps, _, after := latestSnapshots(t, h)
	if len(snaps) != 2 {
		keys := make([]string, 0, len(snaps))
		for k := range snaps {
			keys = append(keys, k)
		}
		t.Fatalf("snapshots of %d aggregates (%d changelog records, %d before): want account/real and idem/known only; %v", len(snaps), after, before, keys[:min(5, len(keys))])
	}
}

// The dedupe window is remembered in every snapshot. With each remembered
// command small (a command id of 1 KB) but a window large enough, the
// snapshot outgrew the record limit after enough commands, and from then on
// every command on the aggregate was refused output_too_large: any client
// could brick any aggregate with cheap commands. Fixed: the oldest
// remembered commands are forgotten (the window shrinks) until the
// snapshot fits; only a state too large by itself isolates a command.
func TestDedupeWindowNeverBricksAnAggregate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "", func(c *topology.Config) {
		c.MaxRecordBytes, c.MaxCommandBytes, c.DedupeWindow = 64<<10, 32<<10, 200
	})
	wantStatus(t, h.Send(cmd("account", "dw", "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	part := topology.PartitionFor([]byte("dw"), partitions)
	const n = 100 // 100 x 1 KB ids: past 64 KB
	var recs []*kgo.Record
	var ids []string
	var last string
	for i := range n {
		rec := commandRecord("dw", part, "Deposit", `{"amount":1}`)
		id := client.NewID() + strings.Repeat("i", 990)
		rec.Headers[0].Value = []byte(id)
		ids = append(ids, id)
		last = withReply(rec, "", nil)
		_ = i
		recs = append(recs, rec)
	}
	produceRaw(t, h, nil, recs...)
	rep, _ := awaitReply(t, h, "command_reply", last, 60*time.Second)
	if rep.Status != wire.StatusAccepted || rep.Version != n+1 {
		t.Fatalf("command %d answered %+v, want ACCEPTED at version %d", n, rep, n+1)
	}
	// The newest command is still remembered: its retry is a duplicate.
	retry := commandRecord("dw", part, "Deposit", `{"amount":1}`)
	retry.Headers[0].Value = []byte(ids[n-1])
	corr := withReply(retry, "", nil)
	produceRaw(t, h, nil, retry)
	if rep, _ := awaitReply(t, h, "command_reply", corr, 30*time.Second); !rep.Duplicate || rep.Version != n+1 {
		t.Fatalf("retry of the newest command answered %+v, want a duplicate at version %d", rep, n+1)
	}
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
	if len(versions["account/dw"]) != n+1 {
		t.Fatalf("%d events, want %d", len(versions["account/dw"]), n+1)
	}
}

// A reply topic deleted after its partition count was cached: the reply's
// produce failed (unknown topic), the transaction aborted, and the retry
// used the same cached count, so the batch failed again, forever, and every
// partition of the worker stopped: franz-go never fails a transactional
// record whose topic vanished after it was sent, so the flush waited out
// the transaction timeout and Run returned an error (the worker died).
// Fixed: a known reply topic is looked up again (with the batch's other new
// reply topics, one request) when its entry is older than a second, so the
// deleted topic's reply is dropped (counted) and the batch commits.
func TestReplyTopicDeletedAfterUseBlocksNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.Admin().CreateTopic(ctx, 2, -1, nil, "gone-replies"); err != nil {
		t.Fatal(err)
	}
	w := h.StartProcessor("w0", "", func(c *topology.Config) { c.ReplyTopics = []string{"gone-replies"} })
	wantStatus(t, h.Send(cmd("account", "gr", "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	other := otherPartitionID("gr-other", "gr")
	wantStatus(t, h.Send(cmd("account", other, "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	part := topology.PartitionFor([]byte("gr"), partitions)
	rec := commandRecord("gr", part, "Deposit", `{"amount":1}`)
	corr := withReply(rec, "gone-replies", nil)
	produceRaw(t, h, nil, rec)
	rep, _ := awaitReply(t, h, "gone-replies", corr, 30*time.Second)
	wantStatus(t, rep, wire.StatusAccepted, 2)

	// The worker checks a known reply topic again when its entry is older
	// than a second; a topic deleted within that second of its last use
	// still stops the worker (see replyroute.go, prefetch).
	time.Sleep(1500 * time.Millisecond)
	if _, err := h.Admin().DeleteTopics(ctx, "gone-replies"); err != nil {
		t.Fatal(err)
	}
	rec = commandRecord("gr", part, "Deposit", `{"amount":1}`)
	withReply(rec, "gone-replies", nil)
	produceRaw(t, h, nil, rec)
	sctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	rep, err := h.Client().Send(sctx, cmd("account", other, "Deposit", `{"amount":7}`))
	if err != nil {
		t.Fatalf("a deposit on another partition got no reply after a reply topic was deleted: %v (stats %+v)", err, w.Stats())
	}
	wantStatus(t, rep, wire.StatusAccepted, 2)
	// The command whose reply topic is gone took effect; its reply was dropped.
	wantStatus(t, h.Send(cmd("account", "gr", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 4)
	if s := w.Stats(); s.RepliesDropped < 1 {
		t.Fatalf("stats %+v: want the dropped reply counted", s)
	}
	wantContiguous(t, h)
}

// Every answer without effect on an aggregate that never existed leaves no
// trace: a version conflict, an expired deadline, an invalid command, a
// wrong partition, and a retry of each. (No defect found; kept as a
// regression test of issue 12 part 8.)
func TestNoEffectAnswersOnUnknownAggregatesPersistNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	wantStatus(t, h.Send(cmd("account", "real", "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	_, _, before := latestSnapshots(t, h)
	type probe struct {
		rec  *kgo.Record
		want wire.Status
	}
	var probes []probe
	add := func(want wire.Status, json string, wrong bool, extra ...kgo.RecordHeader) {
		id := client.NewID()
		part := topology.PartitionFor([]byte(id), partitions)
		if wrong {
			part = (part + 1) % partitions
		}
		rec := commandRecord(id, part, "OpenAccount", json)
		rec.Headers = append(rec.Headers, extra...)
		probes = append(probes, probe{rec, want})
	}
	open := `{"owner":"O","currency":"EUR"}`
	add(wire.StatusConflict, open, false, kgo.RecordHeader{Key: wire.HeaderExpectedVersion, Value: []byte("5")})
	add(wire.StatusConflict, open, false, kgo.RecordHeader{Key: wire.HeaderExpectedVersion, Value: []byte(wire.ExpectExists)})
	add(wire.StatusExpired, open, false, kgo.RecordHeader{Key: wire.HeaderDeadline, Value: []byte(time.Now().Add(-time.Hour).Format(time.RFC3339Nano))})
	add(wire.StatusInvalid, `{"owner":`, false)
	add(wire.StatusWrongPartition, open, true)
	add(wire.StatusRejected, `{"owner":"O","currency":"euro"}`, false)
	for round := range 2 { // the second round retries every command (same id)
		var corrs []string
		recs := make([]*kgo.Record, len(probes))
		for i, pr := range probes {
			recs[i] = &kgo.Record{Topic: "commands", Partition: pr.rec.Partition, Key: pr.rec.Key, Value: pr.rec.Value,
				Headers: append([]kgo.RecordHeader(nil), pr.rec.Headers...)}
			corrs = append(corrs, withReply(recs[i], "", nil))
		}
		produceRaw(t, h, nil, recs...)
		for i, pr := range probes {
			rep, _ := awaitReply(t, h, "command_reply", corrs[i], 30*time.Second)
			if rep.Status != pr.want || rep.Version != 0 || rep.Duplicate {
				t.Fatalf("round %d, probe %d: answered %+v, want %s at version 0", round, i, rep, pr.want)
			}
		}
	}
	wantStatus(t, h.Send(cmd("account", "real", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	if _, _, after := latestSnapshots(t, h); after != before+1 {
		t.Fatalf("changelog grew from %d to %d records for answers without effect and one deposit", before, after)
	}
}

// An output topic whose own max.message.bytes is below the configured
// limits (a topic config, common on managed clusters): every output is
// checked against BrokerMaxMessageBytes only, so a 300 KB event passed the
// check, the broker refused it, and the batch was retried unchanged.
func TestOutputTopicWithASmallerMessageLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	ctx := context.Background()
	adm := h.Admin()
	d := topology.Defaults().Topics
	small := "200000"
	for _, spec := range d.Specs() {
		cfg := map[string]*string{}
		for k, v := range spec.Configs {
			cfg[k] = v
		}
		if spec.Name == d.Events {
			cfg["max.message.bytes"] = &small
		}
		if _, err := adm.CreateTopic(ctx, partitions, -1, cfg, spec.Name); err != nil {
			t.Fatal(err)
		}
	}
	w := h.StartProcessor("w0", "")
	other := otherPartitionID("mm-other", "mm")
	wantStatus(t, h.Send(cmd("account", other, "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	// Random (incompressible) bytes: the broker checks the compressed batch.
	noise := make([]byte, 225_000)
	rand.Read(noise)
	owner := base64.StdEncoding.EncodeToString(noise)
	rec := commandRecord("mm", topology.PartitionFor([]byte("mm"), partitions), "OpenAccount", `{"owner":"`+owner+`","currency":"EUR"}`)
	corr := withReply(rec, "", nil)
	produceRaw(t, h, nil, rec)
	rep, err := sendWithin(h, cmd("account", other, "Deposit", `{"amount":7}`), 30*time.Second)
	if err != nil {
		t.Fatalf("a deposit on another partition got no reply: %v (stats %+v)", err, w.Stats())
	}
	wantStatus(t, rep, wire.StatusAccepted, 2)
	big, _ := awaitReply(t, h, "command_reply", corr, 30*time.Second)
	if big.Code != topology.CodeOutputTooLarge || big.Events != 0 {
		t.Fatalf("answered %+v, want %s without effect", big, topology.CodeOutputTooLarge)
	}
	if s := w.Stats(); s.Aborted > 0 {
		t.Fatalf("stats %+v: the oversized event was produced and refused", s)
	}
}

// An allow-listed reply topic whose own max.message.bytes is small: a
// reply that does not fit is refused by the broker, not by the size checks
// (only the topology's own topics are described). Every such refusal
// failed the batch, which was retried unchanged: a hot loop stopping every
// partition of the worker (36,917 aborts in 30 s on this branch's base,
// 035504c). The isolation of topology/isolate.go answers it. The property: other partitions flow, the
// command is answered output_refused without effect, few aborts.
func TestRefusedOutputIsolatesItsCommandAfterOneAbort(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	ctx := context.Background()
	limit := "2000"
	if _, err := h.Admin().CreateTopic(ctx, 2, -1, map[string]*string{"max.message.bytes": &limit}, "tiny-replies"); err != nil {
		t.Fatal(err)
	}
	w := h.StartProcessor("w0", "", func(c *topology.Config) { c.ReplyTopics = []string{"tiny-replies"} })
	other := otherPartitionID("ti-other", "ti")
	wantStatus(t, h.Send(cmd("account", other, "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("account", "ti", "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	noise := make([]byte, 6000)
	rand.Read(noise)
	rec := commandRecord("ti", topology.PartitionFor([]byte("ti"), partitions), "Deposit", `{"amount":5}`)
	corr := base64.StdEncoding.EncodeToString(noise) // an 8 KB correlation id, echoed in the reply
	rec.Headers = append(rec.Headers,
		kgo.RecordHeader{Key: wire.HeaderCorrelationID, Value: []byte(corr)},
		kgo.RecordHeader{Key: wire.HeaderReplyTopic, Value: []byte("tiny-replies")})
	produceRaw(t, h, nil, rec)
	rep, err := sendWithin(h, cmd("account", other, "Deposit", `{"amount":7}`), 30*time.Second)
	if err != nil {
		t.Fatalf("a deposit on another partition got no reply: %v (stats %+v)", err, w.Stats())
	}
	wantStatus(t, rep, wire.StatusAccepted, 2)
	got, _ := awaitReply(t, h, "command_reply", corr, 30*time.Second)
	if got.Code != "output_refused" || got.Events != 0 {
		t.Fatalf("answered %+v, want output_refused without effect", got)
	}
	deadLetterOf(t, h, commandID(rec), 30*time.Second)
	if s := w.Stats(); s.Aborted > 10 {
		t.Fatalf("stats %+v: the batch was retried %d times", s, s.Aborted)
	}
	// No effect: the next deposit is version 2.
	wantStatus(t, h.Send(cmd("account", "ti", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
}

// A huge correlation id is echoed in the reply: with a large key repeated
// twice in it, the reply of an accepted deposit would not fit. The command
// is isolated (its deposit not applied) and answered with a shrunk reply
// that still carries the correlation id. (No defect found; a regression
// test.)
func TestHugeCorrelationIDIsolatesTheCommand(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	key := strings.Repeat("k", 80_000)
	part := topology.PartitionFor([]byte(key), partitions)
	open := commandRecord(key, part, "OpenAccount", `{"owner":"O","currency":"EUR"}`)
	corr := withReply(open, "", nil)
	produceRaw(t, h, nil, open)
	rep, _ := awaitReply(t, h, "command_reply", corr, 30*time.Second)
	wantStatus(t, rep, wire.StatusAccepted, 1)

	dep := commandRecord(key, part, "Deposit", `{"amount":5}`)
	huge := client.NewID() + strings.Repeat("c", 841_000) // the command fits in MaxCommandBytes, its reply not in a record
	dep.Headers = append(dep.Headers, kgo.RecordHeader{Key: wire.HeaderCorrelationID, Value: []byte(huge)})
	produceRaw(t, h, nil, dep)
	rep, r := awaitReply(t, h, "command_reply", huge, 30*time.Second)
	if rep.Status != wire.StatusInvalid || rep.Code != topology.CodeOutputTooLarge || rep.Version != 1 || r.Key != nil {
		t.Fatalf("answered %+v with a %d-byte key", rep, len(r.Key))
	}
	deadLetterOf(t, h, commandID(dep), 30*time.Second)
	again := commandRecord(key, part, "Deposit", `{"amount":1}`)
	corr = withReply(again, "", nil)
	produceRaw(t, h, nil, again)
	rep, _ = awaitReply(t, h, "command_reply", corr, 30*time.Second)
	wantStatus(t, rep, wire.StatusAccepted, 2)
}
