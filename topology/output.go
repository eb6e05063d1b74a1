package topology

import (
	"context"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/wire"
)

// Output sizes. A record franz-go refuses (larger than its producer's
// ProducerBatchMaxBytes, measured uncompressed with its key and headers) or
// the broker refuses (max.message.bytes) fails the whole transaction, and
// the same batch would fail again on every retry: one command would stop
// every partition of its worker. So every record a command causes is built
// and sized while that command is handled, before any of them is produced;
// a command whose outputs do not fit is answered with a small reply and
// dead-lettered alone, and the aggregate keeps nothing of it.

// Producer and broker limits, as Kafka and franz-go define them.
const (
	// DefaultMaxRecordBytes is franz-go's default ProducerBatchMaxBytes
	// (Kafka's default max.message.bytes as a topic config).
	DefaultMaxRecordBytes = 1_000_012
	// DefaultBrokerMaxMessageBytes is Kafka's default message.max.bytes.
	DefaultBrokerMaxMessageBytes = 1_048_588
	// commandHeadroom is what a dead-letter copy adds to a command (its
	// error and pointer headers, capped) plus the batch overhead: a command
	// of MaxCommandBytes must fit in a record with it.
	commandHeadroom = 16 << 10
	// DefaultMaxCommandBytes leaves room below DefaultMaxRecordBytes for a
	// command's dead-letter copy.
	DefaultMaxCommandBytes = 900 << 10
	// MaxCommandIDBytes bounds a command id: it is remembered, and repeated
	// on every event and reply of the command.
	MaxCommandIDBytes = 1024
)

// recordBatchOverhead is the size of a record batch holding no record
// (franz-go's own constant, plus the flexible request versions' few bytes).
const recordBatchOverhead = 61 + 8

// recordBytes is the size franz-go checks against ProducerBatchMaxBytes for
// a batch holding r alone, over-estimating the varints (the timestamp and
// offset deltas of the first record are 0, the length prefix at most 5).
func recordBytes(r *kgo.Record) int {
	n := 1 + 10 + 5 // attributes, timestamp delta, offset delta
	n += varintLen(len(r.Key)) + len(r.Key)
	n += varintLen(len(r.Value)) + len(r.Value)
	n += varintLen(len(r.Headers))
	for _, h := range r.Headers {
		n += varintLen(len(h.Key)) + len(h.Key) + varintLen(len(h.Value)) + len(h.Value)
	}
	return recordBatchOverhead + 5 + n
}

// kvRecordBytes is recordBytes of a record with a key and a value of these
// lengths and no headers.
func kvRecordBytes(keyLen, valueLen int) int {
	return recordBatchOverhead + 5 + 1 + 10 + 5 + varintLen(keyLen) + keyLen + varintLen(valueLen) + valueLen + varintLen(0)
}

// varintLen is the size of Kafka's zig-zag varint of n.
func varintLen(n int) int {
	u := uint64(n) << 1
	if n < 0 {
		u = ^u
	}
	l := 1
	for u >= 0x80 {
		u >>= 7
		l++
	}
	return l
}

// outputLimit is the largest record the processor produces: the lowest of
// Config.MaxRecordBytes, Config.BrokerMaxMessageBytes and the session
// client's ProducerBatchMaxBytes (a ClientOpts may lower it).
func (p *Processor) outputLimit() int {
	c := p.topics
	c.limitOnce.Do(func() {
		c.configure(&p.cfg)
		c.limit = min(p.cfg.MaxRecordBytes, p.cfg.BrokerMaxMessageBytes)
		if n := p.topicMessageLimit(); n > 0 && n < c.limit {
			p.log.Warn("an output topic's max.message.bytes is below BrokerMaxMessageBytes; outputs are checked against it", "max_message_bytes", n, "broker_max_message_bytes", p.cfg.BrokerMaxMessageBytes)
			c.limit = n
		}
		if p.sess != nil {
			if v, ok := p.sess.Client().OptValue(kgo.ProducerBatchMaxBytes).(int32); ok && v > 0 && int(v) < c.limit {
				p.log.Warn("the producer's ProducerBatchMaxBytes is below MaxRecordBytes; outputs are checked against it", "producer", v, "max_record_bytes", p.cfg.MaxRecordBytes)
				c.limit = int(v)
			}
		}
	})
	return c.limit
}

// topicMessageLimit returns the lowest max.message.bytes of the topics the
// processor writes (events, changelog, dead letters, default replies), or 0
// when it cannot be read. A topic's own limit may be below the broker's
// (a topic config, common on managed clusters): an output checked only
// against BrokerMaxMessageBytes was then refused by the broker, and its
// batch retried unchanged, stopping every partition of the worker. (The
// broker checks the batch as compressed; sizing it uncompressed errs on the
// safe side, as for every other limit here.)
func (p *Processor) topicMessageLimit() int {
	if p.adm == nil {
		return 0
	}
	t := p.cfg.Topics
	ctx, cancel := context.WithTimeout(context.Background(), 4*p.topics.timeout)
	defer cancel()
	rcs, err := p.adm.DescribeTopicConfigs(ctx, t.Events, t.Changelog, t.DeadLetters, t.Replies)
	if err != nil {
		p.log.Warn("cannot read the output topics' max.message.bytes; using BrokerMaxMessageBytes", "err", err)
		return 0
	}
	limit := 0
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			if n, err := strconv.Atoi(*c.Value); err == nil && n > 0 && (limit == 0 || n < limit) {
				limit = n
			}
		}
	}
	return limit
}

// fits reports whether r can be produced.
func (p *Processor) fits(r *kgo.Record) bool { return recordBytes(r) <= p.outputLimit() }

// outputTooLarge describes an output that does not fit.
func (p *Processor) outputTooLarge(what string, r *kgo.Record) error {
	return &invalidError{CodeOutputTooLarge, fmt.Errorf("the command's %s would be a %d-byte record, more than the limit of %d (MaxRecordBytes, the broker's and the producer's limits)", what, recordBytes(r), p.outputLimit())}
}

// capMessage truncates a reply message to MaxReplyMessageBytes, at a rune
// boundary, with a marker saying how long it was: rejection messages may
// quote their input, and Go's %q makes a 2-byte rune 6 bytes long.
func capMessage(s string) string { return wire.Truncate(s, MaxReplyMessageBytes) }

// truncateRunes cuts s to at most n bytes, at a rune boundary.
func truncateRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// MaxReplyMessageBytes caps the message of a reply and of a remembered one
// (the dedupe window in the snapshot).
const MaxReplyMessageBytes = 1024

// answerAlone answers a command whose outputs cannot be written, without any
// effect: a small reply (no key, the aggregate id dropped if long) and a
// dead letter. The caller has changed nothing of the aggregate.
func (p *Processor) answerAlone(b *batch, r *kgo.Record, meta *commandMeta, base wire.Reply, err error) {
	p.mu.Lock()
	p.stats.OutputsTooLarge++
	p.mu.Unlock()
	if o, ok := p.cfg.Observer.(IsolationObserver); ok {
		o.CommandIsolated(r.Partition, CodeOutputTooLarge)
	}
	base.Events = 0
	p.reject(b, r, meta, base, err)
}
