package topology_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// These tests are the edges of issue 12: a command never chooses an output
// topic of the topology, and one command whose outputs cannot be written
// never stops its partition or any other. Each waits with a deadline, so a
// worker stuck in a loop of aborts fails the test instead of hanging it.

// produceRaw produces recs as they are (manual partitions), with extra
// client options (compression, larger batches).
func produceRaw(t *testing.T, h *topologytest.Harness, opts []kgo.Opt, recs ...*kgo.Record) {
	t.Helper()
	h.Client() // the topics exist
	cl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(h.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, h.ClientOpts...), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range recs {
		r.Topic = h.Topic(r.Topic)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// withReply sets a record's correlation id and reply address headers (a
// nil partition sends no partition header) and returns the correlation id.
func withReply(r *kgo.Record, topic string, partition *int32) string {
	corr := client.NewID()
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderCorrelationID, Value: []byte(corr)})
	if topic != "" {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderReplyTopic, Value: []byte(topic)})
	}
	if partition != nil {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderReplyPartition, Value: binary.BigEndian.AppendUint32(nil, uint32(*partition))})
	}
	return corr
}

// awaitReply waits (up to within) for the reply with correlation id corr on
// topic, failing the test when none comes.
func awaitReply(t *testing.T, h *topologytest.Harness, topic, corr string, within time.Duration) (wire.Reply, *kgo.Record) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, r := range h.ReadTopic(topic) {
			if header(r, wire.HeaderCorrelationID) == corr {
				rep, err := h.Registry.DecodeReply(r.Value, contentType(r))
				if err != nil {
					t.Fatal(err)
				}
				return rep, r
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no reply with correlation id %s on %s within %v", corr, topic, within)
	return wire.Reply{}, nil
}

// deadLetterOf returns the dead letter of the command with command id id.
func deadLetterOf(t *testing.T, h *topologytest.Harness, id string, within time.Duration) *kgo.Record {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, r := range h.ReadTopic("commands-dlq") {
			if header(r, wire.HeaderCommandID) == id {
				return r
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("command %s was not dead-lettered within %v", id, within)
	return nil
}

func commandID(r *kgo.Record) string { return header(r, wire.HeaderCommandID) }

// The changelog-poisoning scenario of the review, and the same forged
// header aimed at every other topic a worker must never write from a
// command: the command is answered INVALID (bad_reply_address) on the
// default reply topic and dead-lettered, and the named topic is untouched.
func TestForgedReplyTopicNeverWritesAnInternalTopic(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sagaTopics := func(c *topology.Config) { c.ReplyTopics, c.InternalTopics = nil, []string{"transfer-*"} }
	h.StartProcessor("w0", "", sagaTopics)
	wantStatus(t, h.Send(cmd("account", "v", "OpenAccount", `{"owner":"V","currency":"EUR"}`)), wire.StatusAccepted, 1)
	vp := topology.PartitionFor([]byte("v"), partitions)
	ctx := context.Background()
	if _, err := h.Admin().CreateTopic(ctx, partitions, -1, nil, "transfer-replies"); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"snapshots-changelog", "events", "commands", "commands-dlq", "transfer-replies", "__consumer_offsets"} {
		t.Run(target, func(t *testing.T) {
			topic := h.Topic(target)
			var before int
			if !strings.HasPrefix(topic, "__") {
				before = len(h.ReadTopic(topic))
			}
			// The key that is a changelog key ("account/v"), on the partition
			// that holds v's snapshot.
			key := "account/v"
			rec := commandRecord(key, topology.PartitionFor([]byte(key), partitions), "Deposit", `{"amount":1}`)
			corr := withReply(rec, topic, &vp)
			produceRaw(t, h, nil, rec)
			rep, _ := awaitReply(t, h, "command_reply", corr, 30*time.Second)
			if rep.Status != wire.StatusInvalid || rep.Code != topology.CodeBadReplyAddress {
				t.Fatalf("forged reply topic %s answered %+v, want INVALID %s", topic, rep, topology.CodeBadReplyAddress)
			}
			dl := deadLetterOf(t, h, commandID(rec), 30*time.Second)
			if !strings.Contains(header(dl, wire.HeaderDLQError), topic) {
				t.Fatalf("dead letter error %q does not name the topic", header(dl, wire.HeaderDLQError))
			}
			if strings.HasPrefix(topic, "__") {
				return
			}
			// The dead letter, and the forged command itself, are the only
			// records a forged command may add.
			want := before
			if target == "commands-dlq" || target == "commands" {
				want++
			}
			if after := len(h.ReadTopic(topic)); after != want {
				t.Fatalf("%s has %d records, had %d before", topic, after, before)
			}
		})
	}
	// The changelog still restores: v's snapshot is its own, and a new
	// worker (full restore) carries on at version 2.
	snaps, _, _ := latestSnapshots(t, h)
	if s := snaps["account/v"]; s.Version != 1 {
		t.Fatalf("snapshot of account/v %+v", s)
	}
	h.StartProcessor("w1", "", sagaTopics)
	wantStatus(t, h.Send(cmd("account", "v", "Deposit", `{"amount":2}`)), wire.StatusAccepted, 2)
}

// A reply partition out of the reply topic's range is a bad address too.
func TestOutOfRangeReplyPartitionIsInvalid(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	bad := int32(partitions + 3)
	rec := commandRecord("op", topology.PartitionFor([]byte("op"), partitions), "OpenAccount", `{"owner":"O","currency":"EUR"}`)
	corr := withReply(rec, h.Topic("command_reply"), &bad)
	produceRaw(t, h, nil, rec)
	rep, _ := awaitReply(t, h, "command_reply", corr, 30*time.Second)
	if rep.Status != wire.StatusInvalid || rep.Code != topology.CodeBadReplyAddress {
		t.Fatalf("answered %+v, want INVALID %s", rep, topology.CodeBadReplyAddress)
	}
	deadLetterOf(t, h, commandID(rec), 30*time.Second)
	// Nothing happened: the account can still be opened.
	wantStatus(t, h.Send(cmd("account", "op", "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
}

// Reply topics beyond the default are an allow-list: an exact name and a
// prefix (Spring's per-instance reply topics). A topic under an allowed
// prefix that does not exist loses its reply (counted), not the command.
func TestReplyTopicAllowList(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.Admin().CreateTopics(ctx, 2, -1, nil, "my-replies", "replies-instance-7", "other-replies"); err != nil {
		t.Fatal(err)
	}
	w := h.StartProcessor("w0", "", func(c *topology.Config) {
		c.ReplyTopics = []string{"my-replies", "replies-*"}
	})
	p := topology.PartitionFor([]byte("al"), partitions)
	send := func(topic string, part *int32, typ, json string) (*kgo.Record, string) {
		rec := commandRecord("al", p, typ, json)
		corr := withReply(rec, topic, part)
		produceRaw(t, h, nil, rec)
		return rec, corr
	}
	_, corr := send("my-replies", nil, "OpenAccount", `{"owner":"O","currency":"EUR"}`)
	rep, _ := awaitReply(t, h, "my-replies", corr, 30*time.Second)
	wantStatus(t, rep, wire.StatusAccepted, 1)
	one := int32(1)
	_, corr = send("replies-instance-7", &one, "Deposit", `{"amount":5}`)
	rep, r := awaitReply(t, h, "replies-instance-7", corr, 30*time.Second)
	wantStatus(t, rep, wire.StatusAccepted, 2)
	if r.Partition != 1 {
		t.Fatalf("reply on partition %d, want 1", r.Partition)
	}
	// Not allowed: answered INVALID on the default topic, dead-lettered.
	rec, corr := send("other-replies", nil, "Deposit", `{"amount":5}`)
	rep, _ = awaitReply(t, h, "command_reply", corr, 30*time.Second)
	if rep.Status != wire.StatusInvalid || rep.Code != topology.CodeBadReplyAddress || rep.Version != 0 {
		t.Fatalf("not allow-listed: %+v", rep)
	}
	deadLetterOf(t, h, commandID(rec), 30*time.Second)
	if n := len(h.ReadTopic("other-replies")); n != 0 {
		t.Fatalf("%d records on a topic that is not allow-listed", n)
	}
	// Allowed prefix, missing topic: the command takes effect, its reply is
	// dropped and counted.
	send("replies-gone", nil, "Deposit", `{"amount":5}`)
	wantStatus(t, h.Send(cmd("account", "al", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 4)
	if s := w.Stats(); s.RepliesDropped != 1 || s.BadReplyAddresses != 1 {
		t.Fatalf("stats %+v: want one dropped reply and one bad reply address", s)
	}
}

// The review's 400 KB OpenAccount whose currency is 200,000 x U+0085: its
// rejection quoted the input with %q (1.2 MB), the reply could never be
// written and the worker aborted the batch forever. The answer is capped,
// and a command on another partition of the same worker is answered.
func TestAmplifyingRejectionIsCappedAndBlocksNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w := h.StartProcessor("w0", "")
	other := otherPartitionID("dep-other", "huge")
	wantStatus(t, h.Send(cmd("account", other, "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	_, _, changelogBefore := latestSnapshots(t, h)

	rec := commandRecord("huge", topology.PartitionFor([]byte("huge"), partitions), "OpenAccount",
		`{"owner":"O","currency":"`+strings.Repeat("\u0085", 200_000)+`"}`)
	corr := withReply(rec, h.Topic("command_reply"), nil)
	produceRaw(t, h, nil, rec)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	rep, err := h.Client().Send(ctx, cmd("account", other, "Deposit", `{"amount":7}`))
	if err != nil {
		t.Fatalf("a deposit on another partition got no reply while the huge command was handled: %v (stats %+v)", err, w.Stats())
	}
	wantStatus(t, rep, wire.StatusAccepted, 2)
	huge, _ := awaitReply(t, h, "command_reply", corr, 30*time.Second)
	if huge.Status != wire.StatusRejected || huge.Code != account.CodeInvalidCurrency || huge.Version != 0 {
		t.Fatalf("huge command answered %+v", huge)
	}
	if len(huge.Message) > topology.MaxReplyMessageBytes || !strings.Contains(huge.Message, "truncated") {
		t.Fatalf("message of %d bytes (%.80q...), want at most %d with a truncation marker", len(huge.Message), huge.Message, topology.MaxReplyMessageBytes)
	}
	t.Logf("transactions %d, aborted %d", w.Stats().Transactions, w.Stats().Aborted)
	// A rejection on an aggregate that never existed persists nothing.
	if _, _, n := latestSnapshots(t, h); n != changelogBefore+1 {
		t.Fatalf("changelog has %d records, want %d (only the deposit's snapshot)", n, changelogBefore+1)
	}
}

// A 2 MB command compressed with zstd to a few KB passes the broker; its
// byte-for-byte dead-letter copy could never be written. It is answered
// INVALID too_large and dead-lettered with a pointer instead of its value;
// other partitions flow.
func TestCompressedHugeCommandIsDeadLetteredWithAPointer(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	other := otherPartitionID("zo", "zz")
	wantStatus(t, h.Send(cmd("account", other, "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	part := topology.PartitionFor([]byte("zz"), partitions)
	rec := commandRecord("zz", part, "Deposit", `{"amount":1, "pad":"`+strings.Repeat("a", 2<<20)+`"}`)
	corr := withReply(rec, h.Topic("command_reply"), nil)
	produceRaw(t, h, []kgo.Opt{kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerBatchMaxBytes(4 << 20)}, rec)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	rep, err := h.Client().Send(ctx, cmd("account", other, "Deposit", `{"amount":7}`))
	if err != nil {
		t.Fatalf("a deposit on another partition got no reply: %v", err)
	}
	wantStatus(t, rep, wire.StatusAccepted, 2)
	big, _ := awaitReply(t, h, "command_reply", corr, 30*time.Second)
	if big.Status != wire.StatusInvalid || big.Code != topology.CodeTooLarge {
		t.Fatalf("answered %+v, want INVALID %s", big, topology.CodeTooLarge)
	}
	dl := deadLetterOf(t, h, commandID(rec), 30*time.Second)
	if dl.Value != nil || header(dl, wire.HeaderDLQValueOmitted) == "" ||
		header(dl, wire.HeaderDLQTopic) != h.Topic("commands") || header(dl, wire.HeaderDLQPartition) != fmt.Sprint(part) || header(dl, wire.HeaderDLQOffset) == "" {
		t.Fatalf("dead letter: %d value bytes, headers %v; want no value and a pointer", len(dl.Value), dl.Headers)
	}
	if header(dl, wire.HeaderCommandType) != "Deposit" {
		t.Fatalf("dead letter lost the command's headers: %v", dl.Headers)
	}
}

// amplifier is the account aggregate with outputs larger than its input:
// OpenAccount's event carries the owner twice, and each deposit doubles the
// owner in the state (so the snapshot outgrows every event).
var amplifier = aggregates.Type[account.Account]{
	Name: "amplifier",
	Decide: func(s account.Account, c aggregates.Command) ([]aggregates.Event, error) {
		if o, ok := c.(account.OpenAccount); ok && s.Status == "" && strings.HasPrefix(o.Owner, "big") {
			return []aggregates.Event{account.AccountOpened{Owner: o.Owner + o.Owner, Currency: o.Currency}}, nil
		}
		return account.Decide(s, c)
	},
	Evolve: func(s account.Account, e aggregates.Event) account.Account {
		s = account.Evolve(s, e)
		if _, ok := e.(account.MoneyDeposited); ok {
			s.Owner += s.Owner
		}
		return s
	},
	Commands: account.Type.Commands,
	Events:   account.Type.Events,
}

// A command whose event or snapshot would be larger than a record may be is
// answered INVALID output_too_large and dead-lettered alone; the aggregate
// keeps nothing of it (no event, no state change), its versions stay
// contiguous, and other partitions flow.
func TestOversizedEventsAndSnapshotsIsolateTheCommand(t *testing.T) {
	t.Parallel()
	h := harnessWith(t, amplifier)
	h.StartProcessor("w0", "")
	send := func(id, typ, json string) wire.Reply {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		rep, err := h.Client().Send(ctx, client.Command{AggregateType: "amplifier", AggregateID: id, Type: typ, JSON: []byte(json)})
		if err != nil {
			t.Fatalf("%s on %s: no reply: %v", typ, id, err)
		}
		return rep
	}
	// The event would be 1.2 MB.
	rep := send("ev", "OpenAccount", `{"owner":"big`+strings.Repeat("e", 600_000)+`","currency":"EUR"}`)
	if rep.Status != wire.StatusInvalid || rep.Code != topology.CodeOutputTooLarge || rep.Version != 0 {
		t.Fatalf("open with a 1.2 MB event answered %+v", rep)
	}
	wantStatus(t, send("ev", "OpenAccount", `{"owner":"small","currency":"EUR"}`), wire.StatusAccepted, 1)

	// The snapshot would be 1.2 MB after the second deposit.
	wantStatus(t, send("sn", "OpenAccount", `{"owner":"`+strings.Repeat("s", 300_000)+`","currency":"EUR"}`), wire.StatusAccepted, 1)
	wantStatus(t, send("sn", "Deposit", `{"amount":1}`), wire.StatusAccepted, 2)
	rep = send("sn", "Deposit", `{"amount":2}`)
	if rep.Status != wire.StatusInvalid || rep.Code != topology.CodeOutputTooLarge || rep.Version != 2 {
		t.Fatalf("deposit with a 1.2 MB snapshot answered %+v", rep)
	}
	wantStatus(t, send("sn", "Withdraw", `{"amount":1}`), wire.StatusAccepted, 3)
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
	if len(versions["amplifier/ev"]) != 1 || len(versions["amplifier/sn"]) != 3 {
		t.Fatalf("versions %v", versions)
	}
	if n := len(h.ReadTopic("commands-dlq")); n != 2 {
		t.Fatalf("%d dead letters, want the 2 isolated commands", n)
	}
	snaps, states, _ := latestSnapshots(t, h)
	if s, st := snaps["amplifier/sn"], states["amplifier/sn"].(account.Account); s.Version != 3 || len(st.Owner) != 600_000 || st.Balance != 0 {
		t.Fatalf("snapshot of sn at version %d, owner of %d bytes, balance %d", s.Version, len(st.Owner), st.Balance)
	}
}

// Rejections (and every other answer without effect) on an aggregate that
// never existed write no snapshot: garbage ids do not grow the changelog. A
// retry is decided again, with the same answer.
func TestRejectionsOnUnknownAggregatesPersistNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	wantStatus(t, h.Send(cmd("account", "real", "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	_, _, before := latestSnapshots(t, h)
	var first client.Command
	for i := range 20 {
		c := cmd("account", client.NewID(), "Deposit", `{"amount":1}`)
		if i == 0 {
			first = c
			first.ID = client.NewID()
			c = first
		}
		wantStatus(t, h.Send(c), wire.StatusRejected, 0)
	}
	again := h.Send(first)
	if again.Status != wire.StatusRejected || again.Version != 0 || again.Code != account.CodeNotOpen {
		t.Fatalf("retry answered %+v", again)
	}
	// Flush a last committed batch on every partition, then count.
	wantStatus(t, h.Send(cmd("account", "real", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	if _, _, after := latestSnapshots(t, h); after != before+1 {
		t.Fatalf("changelog grew from %d to %d records for 21 rejections on unknown ids and one deposit", before, after)
	}
}

// A dead letter whose value is omitted still carries what the operator
// needs; the remaining bytes match the original headers.
func TestDeadLetterKeepsSmallCommandsWhole(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	rec := commandRecord("dk", topology.PartitionFor([]byte("dk"), partitions), "Launch", `{}`)
	corr := withReply(rec, "", nil)
	produceRaw(t, h, nil, rec)
	rep, _ := awaitReply(t, h, "command_reply", corr, 30*time.Second)
	if rep.Status != wire.StatusInvalid {
		t.Fatalf("answered %+v", rep)
	}
	dl := deadLetterOf(t, h, commandID(rec), 30*time.Second)
	if !bytes.Equal(dl.Value, rec.Value) || header(dl, wire.HeaderDLQValueOmitted) != "" {
		t.Fatalf("small dead letter changed: %q %v", dl.Value, dl.Headers)
	}
}

// The defaults agree with each other and with franz-go's producer limit,
// and configurations that would let a command write an internal topic, or
// accept a command whose dead-letter copy cannot be written, are refused.
func TestConfigRefusesUnsafeOutputs(t *testing.T) {
	t.Parallel()
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	d := topology.Defaults()
	if d.MaxRecordBytes != 1_000_012 || d.MaxCommandBytes+16<<10 > d.MaxRecordBytes || d.MaxRecordBytes > d.BrokerMaxMessageBytes {
		t.Fatalf("inconsistent defaults: max command %d, max record %d, broker %d", d.MaxCommandBytes, d.MaxRecordBytes, d.BrokerMaxMessageBytes)
	}
	base := topology.Config{Brokers: []string{"127.0.0.1:1"}, InstanceID: "w", StateDir: t.TempDir()}
	if _, err := topology.New(base, reg); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	for _, tt := range []struct {
		name   string
		mutate func(*topology.Config)
		want   string
	}{
		{"every topic", func(c *topology.Config) { c.ReplyTopics = []string{"*"} }, "would allow every topic"},
		{"changelog by prefix", func(c *topology.Config) { c.ReplyTopics = []string{"snapshots-*"} }, `would allow "snapshots-changelog"`},
		{"kafka's own", func(c *topology.Config) { c.ReplyTopics = []string{"__consumer_offsets"} }, `would allow "__*"`},
		{"dead letters", func(c *topology.Config) { c.ReplyTopics = []string{"commands-dlq"} }, `would allow "commands-dlq"`},
		{"internal", func(c *topology.Config) {
			c.ReplyTopics, c.InternalTopics = []string{"transfer-replies"}, []string{"transfer-*"}
		}, `would allow "transfer-*"`},
		{"bad name", func(c *topology.Config) { c.ReplyTopics = []string{"a b"} }, `reply topic "a b": contains ' '`},
		{"command over the record limit", func(c *topology.Config) { c.MaxCommandBytes = 1 << 20 }, "max command bytes 1048576 does not leave"},
		{"command over the broker limit", func(c *topology.Config) { c.BrokerMaxMessageBytes = 500_000 }, "does not leave 16384 bytes below the record limit 500000"},
		{"record limit beyond franz-go", func(c *topology.Config) { c.MaxRecordBytes = 2 << 30 }, "max record bytes 2147483648 not in"},
	} {
		cfg := base
		tt.mutate(&cfg)
		_, err := topology.New(cfg, reg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

// A reply topic whose metadata fails transiently (leader not available) is
// looked up again in the background with backoff; the reply is delivered
// once it answers, never dropped for a transient error.
func TestTransientReplyTopicMetadataIsRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	if _, err := h.Admin().CreateTopic(context.Background(), 2, -1, nil, "slow-replies"); err != nil {
		t.Fatal(err)
	}
	w := h.StartProcessor("w0", "", func(c *topology.Config) { c.ReplyTopics = []string{"slow-replies"} })
	wantStatus(t, h.Send(cmd("account", "tr", "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
	var hits atomic.Int32
	h.Cluster.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		h.Cluster.KeepControl()
		m := req.(*kmsg.MetadataRequest)
		if len(m.Topics) != 1 || m.Topics[0].Topic == nil || *m.Topics[0].Topic != "slow-replies" || hits.Load() >= 3 {
			return nil, nil, false
		}
		hits.Add(1)
		resp := m.ResponseKind().(*kmsg.MetadataResponse)
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic = kmsg.StringPtr("slow-replies")
		rt.ErrorCode = kerr.LeaderNotAvailable.Code
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})
	rec := commandRecord("tr", topology.PartitionFor([]byte("tr"), partitions), "Deposit", `{"amount":3}`)
	corr := withReply(rec, "slow-replies", nil)
	produceRaw(t, h, nil, rec)
	// (Reading slow-replies before the fault is used up would hit it too.)
	deadline := time.Now().Add(45 * time.Second)
	for hits.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the metadata fault was hit %d times, want 3", hits.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	rep, _ := awaitReply(t, h, "slow-replies", corr, 45*time.Second)
	wantStatus(t, rep, wire.StatusAccepted, 2)
	if s := w.Stats(); s.RepliesDropped != 0 {
		t.Fatalf("stats %+v: a reply was dropped for a transient error", s)
	}
	wantContiguous(t, h)
}

// A 600 KB key (an aggregate id) is repeated in the event's key and envelope:
// the event would not fit, so the command is isolated, and its reply, which
// would repeat the key twice too, is shrunk (no key, the id shortened).
func TestHugeKeyIsIsolatedWithASmallReply(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	key := strings.Repeat("k", 600_000)
	rec := commandRecord(key, topology.PartitionFor([]byte(key), partitions), "OpenAccount", `{"owner":"O","currency":"EUR"}`)
	corr := withReply(rec, "", nil)
	produceRaw(t, h, nil, rec)
	rep, r := awaitReply(t, h, "command_reply", corr, 45*time.Second)
	if rep.Status != wire.StatusInvalid || rep.Code != topology.CodeOutputTooLarge || len(rep.AggregateID) > 256 || r.Key != nil {
		t.Fatalf("answered %s %s with a %d-byte id and a %d-byte key", rep.Status, rep.Code, len(rep.AggregateID), len(r.Key))
	}
	dl := deadLetterOf(t, h, commandID(rec), 30*time.Second)
	if string(dl.Key) != key || !bytes.Equal(dl.Value, rec.Value) {
		t.Fatal("the dead letter is not the command")
	}
	if versions, _ := eventsOf(t, h); len(versions) != 0 {
		t.Fatalf("events written: %v", versions)
	}
}
