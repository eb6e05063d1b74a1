package chaos

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// hostilePrefix starts the command id of every hostile command, so that the
// checks can tell them from the workload's.
const hostilePrefix = "hostile-"

// maxCommandBytes is the workers' --max-command-bytes (their default).
var maxCommandBytes = topology.Defaults().MaxCommandBytes

// hostileKind is one kind of hostile command: what it is, and how to build
// it for the n-th hostile aggregate (never opened, so that no hostile
// command may ever cause an event: each one must be answered rejected or
// invalid, and that reply must reach the default reply topic).
type hostileKind struct {
	name string
	zstd bool
	// key, when set, is the aggregate the command is for instead of the
	// n-th never-opened one.
	key  string
	make func(r *run, id string) (typ, body, replyTopic string, replyPartition int32)
}

func forged(topic string, samePartition bool) func(r *run, id string) (string, string, string, int32) {
	return func(r *run, id string) (string, string, string, int32) {
		p := int32(0)
		if samePartition {
			p = topology.PartitionFor([]byte(id), r.o.Partitions)
		}
		return "Deposit", `{"amount":1}`, topic, p
	}
}

// openWithCurrency is an OpenAccount whose currency is s: rejected (no
// currency is that long), with a message that may quote it.
func openWithCurrency(s string) func(r *run, id string) (string, string, string, int32) {
	return func(r *run, id string) (string, string, string, int32) {
		return "OpenAccount", `{"owner":"hostile","currency":"` + s + `"}`, "", -1
	}
}

// padded returns an OpenAccount body of exactly n bytes.
func padded(n int) string {
	const pre, post = `{"owner":"hostile","currency":"`, `"}`
	return pre + strings.Repeat("A", n-len(pre)-len(post)) + post
}

var hostileKinds = []hostileKind{
	// A transfer leg written by a client, to a workload account: without the
	// saga's signature it must be refused (INVALID unsigned_command), or
	// the money check finds the million it would create.
	{name: "forged transfer credit", key: "acct-000", make: func(r *run, id string) (string, string, string, int32) {
		return "CreditForTransfer", `{"transferId":"` + id + `","from":"acct-001","debitVersion":1000000,"amount":1000000,"seq":1000000}`, "", -1
	}},
	{name: "reply to the changelog", make: forged("snapshots-changelog", true)},
	{name: "reply to events", make: forged("events", true)},
	{name: "reply to commands", make: forged("commands", true)},
	{name: "reply to the dead letters", make: forged("commands-dlq", false)},
	{name: "reply to the saga's retired reply topic", make: forged(saga.RetiredReplyTopic, false)},
	{name: "reply to the saga's state topic", make: forged("kcqrs-transfers-state", false)},
	{name: "reply to __consumer_offsets", make: forged("__consumer_offsets", false)},
	{name: "reply partition out of range", make: func(r *run, id string) (string, string, string, int32) {
		return "Deposit", `{"amount":1}`, "command_reply", 9999
	}},
	{name: "reply partition = partition count", make: func(r *run, id string) (string, string, string, int32) {
		return "Deposit", `{"amount":1}`, "command_reply", r.o.Partitions
	}},
	// zstd: the broker checks the compressed batch, and a record just
	// under the processor's limit is over the broker's once uncompressed
	// (headers and batch overhead).
	{name: "just under the size limit", zstd: true, make: func(r *run, id string) (string, string, string, int32) {
		return "OpenAccount", padded(maxCommandBytes - 64), "", -1
	}},
	{name: "just over the size limit", zstd: true, make: func(r *run, id string) (string, string, string, int32) {
		return "OpenAccount", padded(maxCommandBytes + 1), "", -1
	}},
	{name: "2 MB compressed with zstd", zstd: true, make: func(r *run, id string) (string, string, string, int32) {
		return "OpenAccount", padded(2 << 20), "", -1
	}},
	{name: "rejection amplifying its input", make: openWithCurrency(strings.Repeat("\u0085", 200_000))},
}

// hostile sends one hostile command every 0.5-1.5 s until ctx ends,
// cycling through hostileKinds. It does not wait for replies: the check
// requires every command record to have exactly one reply on a reply topic
// the topology may write to, and nothing foreign in its internal topics.
func (r *run) hostile(ctx context.Context) {
	opts := []kgo.Opt{kgo.SeedBrokers(r.brokers...), kgo.ProducerBatchMaxBytes(16 << 20), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil))}
	plain, err := kgo.NewClient(append(opts, kgo.ProducerBatchCompression(kgo.NoCompression()))...)
	if err != nil {
		r.violate("hostile producer: %v", err)
		return
	}
	defer plain.Close()
	zstd, err := kgo.NewClient(append(opts, kgo.ProducerBatchCompression(kgo.ZstdCompression()))...)
	if err != nil {
		r.violate("hostile producer: %v", err)
		return
	}
	defer zstd.Close()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.between(500*time.Millisecond, 1500*time.Millisecond)):
		}
		k := hostileKinds[n%len(hostileKinds)]
		id := fmt.Sprintf("%s%d", hostilePrefix, n)
		typ, body, replyTopic, replyPartition := k.make(r, id)
		if replyTopic == "" {
			replyTopic = "command_reply"
		}
		headers := []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte(id)},
			{Key: wire.HeaderCommandType, Value: []byte(typ)},
			{Key: wire.HeaderAggregateType, Value: []byte("account")},
			{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeJSON)},
			{Key: wire.HeaderCorrelationID, Value: []byte("corr-" + id)},
			{Key: wire.HeaderReplyTopic, Value: []byte(replyTopic)},
		}
		if replyPartition >= 0 {
			headers = append(headers, kgo.RecordHeader{Key: wire.HeaderReplyPartition, Value: binary.BigEndian.AppendUint32(nil, uint32(replyPartition))})
		}
		key := id
		if k.key != "" {
			key = k.key
		}
		rec := &kgo.Record{Topic: "commands", Key: []byte(key), Value: []byte(body), Headers: headers}
		cl := plain
		if k.zstd {
			cl = zstd
		}
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := cl.ProduceSync(pctx, rec).FirstErr()
		cancel()
		if err != nil {
			// The broker may refuse a record (too large even compressed):
			// then there is no command to answer.
			r.logf("hostile %s (%s): not produced: %v", id, k.name, err)
			continue
		}
		atomic.AddInt64(&r.sum.Hostile, 1)
		r.logf("hostile %s (%s, %d bytes): sent", id, k.name, len(body))
	}
}

// checkHostile verifies that no topic of the topology holds a record that
// the topology did not write there: every changelog value is a snapshot,
// every events record an event, every commands record a command, every
// dead letter a copy of a hostile command with its error, nothing on the
// saga's retired reply topic (internal), and no other topic was created (a reply produced to a topic that did not exist).
func (r *run) checkHostile(ctx context.Context) error {
	reg, err := examples.Registry()
	if err != nil {
		return err
	}
	foreign := func(topic string, rec *kgo.Record, why string) {
		r.sum.Foreign++
		r.violate("foreign record in %s at %d/%d (%s; command id %q)", topic, rec.Partition, rec.Offset, why, header(rec, wire.HeaderCommandID))
	}
	commands, err := r.readTopic(ctx, "commands")
	if err != nil {
		return err
	}
	for _, rec := range commands {
		if header(rec, wire.HeaderCommandType) == "" || header(rec, wire.HeaderCommandID) == "" {
			foreign("commands", rec, "no command type or id")
		}
	}
	events, err := r.readTopic(ctx, "events")
	if err != nil {
		return err
	}
	for _, rec := range events {
		if _, _, err := reg.DecodeEvent(rec.Value); err != nil {
			foreign("events", rec, err.Error())
		}
	}
	changelog, err := r.readTopic(ctx, "snapshots-changelog")
	if err != nil {
		return err
	}
	for _, rec := range changelog {
		if rec.Value == nil {
			continue // a tombstone
		}
		if _, _, err := reg.DecodeSnapshot(rec.Value); err != nil {
			foreign("snapshots-changelog", rec, err.Error())
		}
	}
	dlq, err := r.readTopic(ctx, "commands-dlq")
	if err != nil {
		return err
	}
	for _, rec := range dlq {
		if header(rec, wire.HeaderDLQError) == "" || !strings.HasPrefix(header(rec, wire.HeaderCommandID), hostilePrefix) {
			foreign("commands-dlq", rec, "not a dead-lettered hostile command")
		}
	}
	// Nowhere else may the reply to a hostile command land (its
	// correlation id is on no record outside the topics above), and a
	// reply to a topic that does not exist must not create it.
	topics, err := r.adm.ListTopicsWithInternal(ctx)
	if err != nil {
		return fmt.Errorf("chaos: listing topics: %w", err)
	}
	for _, t := range topics.Names() {
		switch t {
		case "commands", "events", "snapshots-changelog", "commands-dlq", "command_reply":
			continue
		}
		if t == saga.RetiredReplyTopic {
			// Internal: the saga's legs are answered on command_reply, and
			// a command naming this topic is refused, so the processor
			// writes nothing here.
			recs, err := r.readTopic(ctx, t)
			if err != nil {
				return err
			}
			for _, rec := range recs {
				foreign(t, rec, "an internal topic (the saga's retired reply topic)")
			}
			continue
		}
		// The saga creates its state topic when it first starts, which may
		// come after the topics were noted; its records are checked below.
		if !r.topicsBefore[t] && t != "kcqrs-transfers-state" {
			r.sum.Foreign++
			r.violate("topic %s was created during the run (a reply produced to it?)", t)
		}
		recs, err := topologytest.ReadCommitted(ctx, r.brokers, t)
		if err != nil {
			r.logf("hostile check: cannot read %s: %v", t, err)
			continue
		}
		for _, rec := range recs {
			if strings.HasPrefix(header(rec, wire.HeaderCorrelationID), "corr-"+hostilePrefix) {
				foreign(t, rec, "a reply to a hostile command")
			}
		}
	}
	for _, t := range []string{"events", "snapshots-changelog", "commands-dlq"} {
		recs, err := r.readTopic(ctx, t)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if t != "commands-dlq" && strings.HasPrefix(header(rec, wire.HeaderCorrelationID), "corr-"+hostilePrefix) {
				foreign(t, rec, "a reply to a hostile command")
			}
		}
	}
	return nil
}

// noteTopics records the topics that exist before the hostile commands.
func (r *run) noteTopics(ctx context.Context) {
	r.topicsBefore = map[string]bool{}
	if topics, err := r.adm.ListTopicsWithInternal(ctx); err == nil {
		for _, t := range topics.Names() {
			r.topicsBefore[t] = true
		}
	}
}

func (r *run) readTopic(ctx context.Context, topic string) ([]*kgo.Record, error) {
	recs, err := topologytest.ReadCommitted(ctx, r.brokers, topic)
	if err != nil {
		return nil, fmt.Errorf("chaos: reading %s: %w", topic, err)
	}
	return recs, nil
}
