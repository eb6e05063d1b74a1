package topology

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/wire"
)

// handle runs one command through the pipeline: parse, route, load, dedupe,
// deadline, expected version, decide, evolve, emit. Every outcome produces
// exactly one reply (when a reply address can be read) inside the open
// transaction; input the processor cannot handle is also dead-lettered.
func (p *Processor) handle(b *batch, ps *partitionState, r *kgo.Record) {
	meta, err := parseCommandMeta(r, p.cfg.Topics.Replies)
	base := wire.Reply{CommandID: meta.commandID, AggregateType: meta.aggregateType, AggregateID: meta.aggregateID}
	if err == nil && len(r.Key) == 0 {
		err = invalid(CodeMissingKey, "command has no key (the aggregate id)")
	}
	if err == nil && len(r.Value) > p.cfg.MaxCommandBytes {
		err = invalid(CodeTooLarge, "command value is %d bytes, more than the limit of %d", len(r.Value), p.cfg.MaxCommandBytes)
	}
	if err != nil {
		p.reject(b, r, &meta, base, err)
		return
	}
	if want := PartitionFor(r.Key, p.partitions); want != r.Partition {
		base.Status, base.Code = wire.StatusWrongPartition, CodeWrongPartition
		base.Message = fmt.Sprintf("key %q belongs to partition %d (Kafka's murmur2 partitioner over %d partitions), not %d: use a murmur2 partitioner", r.Key, want, p.partitions, r.Partition)
		p.reply(b, r, &meta, base)
		p.deadLetter(b, r, errors.New(base.Message))
		return
	}
	bt := p.reg.types[meta.aggregateType]
	if bt == nil {
		p.reject(b, r, &meta, base, invalid(CodeUnknownAggregate, "unknown aggregate type %q (known: %v)", meta.aggregateType, p.reg.AggregateTypes()))
		return
	}
	cmd, err := bt.decodeCommand(&meta, r.Value)
	if err != nil {
		p.reject(b, r, &meta, base, err)
		return
	}
	a, err := p.load(ps, bt, meta.aggregateID)
	if err != nil && p.deferForRebuild(b, ps, r, err) {
		return // rebuilt outside the transaction, then handled again
	}
	if err != nil {
		// A snapshot we cannot read: fail the batch rather than act on a
		// wrong state. It is retried; the error is logged loudly.
		b.fail(fmt.Errorf("load %s/%s: %w", meta.aggregateType, meta.aggregateID, err))
		p.log.Error("cannot load aggregate", "partition", r.Partition, "offset", r.Offset, "command", meta.commandID, "type", meta.aggregateType, "id", meta.aggregateID, "err", err)
		return
	}
	base.Version = a.version

	for i := len(a.recent) - 1; i >= 0; i-- {
		if a.recent[i].CommandID == meta.commandID {
			// The aggregate is the one the command names (its snapshot key),
			// so the rebuilt reply is the original one.
			rep := a.recent[i].Resend(meta.aggregateType, meta.aggregateID)
			b.duplicates++
			p.reply(b, r, &meta, rep)
			return
		}
	}
	if !meta.deadline.IsZero() && p.cfg.Now().After(meta.deadline) {
		base.Status, base.Code = wire.StatusExpired, CodeExpired
		base.Message = "deadline " + meta.deadline.Format(time.RFC3339Nano) + " passed before the command's turn"
		p.reply(b, r, &meta, base)
		return
	}
	if !meta.expected.met(a.version) {
		base.Status, base.Code = wire.StatusConflict, CodeVersionConflict
		base.Message = fmt.Sprintf("expected version %s, aggregate is at version %d", meta.expected, a.version)
		p.reply(b, r, &meta, base)
		return
	}

	events, newState, err := decideAndEvolve(bt, a.state, cmd)
	if err != nil {
		if rej, ok := aggregates.AsRejection(err); ok {
			base.Status, base.Code, base.Message = wire.StatusRejected, rej.Code, rej.Message
			p.remember(a, meta.commandID, base)
			p.reply(b, r, &meta, base)
			return
		}
		p.reject(b, r, &meta, base, err)
		return
	}
	now := p.cfg.Now()
	encoded := make([][]byte, len(events))
	for i, e := range events {
		encoded[i], err = p.reg.encodeEvent(a, a.version+int64(i)+1, meta.commandID, now, e)
		if err != nil {
			p.reject(b, r, &meta, base, &internalError{CodeEncodeFailed, err})
			return
		}
	}
	for i, e := range events {
		version := a.version + int64(i) + 1
		p.produce(b, &kgo.Record{
			Topic:     p.cfg.Topics.Events,
			Partition: ps.p,
			Key:       r.Key,
			Value:     encoded[i],
			Headers: []kgo.RecordHeader{
				{Key: wire.HeaderEventType, Value: []byte(e.EventType())},
				{Key: wire.HeaderAggregateType, Value: []byte(meta.aggregateType)},
				{Key: wire.HeaderVersion, Value: itoa(version)},
				{Key: wire.HeaderCommandID, Value: []byte(meta.commandID)},
			},
		}, nil)
	}
	b.events += int64(len(events))
	a.version += int64(len(events))
	a.state = newState
	base.Status, base.Version, base.Events = wire.StatusAccepted, a.version, int32(len(events))
	p.remember(a, meta.commandID, base)
	p.reply(b, r, &meta, base)
}

// internalError is a failure of the handler or the runtime (not of the
// input): answered INTERNAL_ERROR and dead-lettered.
type internalError struct {
	code string
	err  error
}

func (e *internalError) Error() string { return e.code + ": " + e.err.Error() }
func (e *internalError) Unwrap() error { return e.err }

// decideAndEvolve runs the domain code, turning panics into errors: a bug in
// one handler must not crash the worker or block the partition.
func decideAndEvolve(bt *boundType, state any, cmd aggregates.Command) (events []aggregates.Event, next any, err error) {
	defer func() {
		if v := recover(); v != nil {
			events, next = nil, nil
			err = &internalError{CodeHandlerPanic, fmt.Errorf("panic handling %s: %v\n%s", cmd.CommandType(), v, debug.Stack())}
		}
	}()
	events, err = bt.handler.HandleCommand(state, cmd)
	if err != nil {
		if _, ok := aggregates.AsRejection(err); ok {
			return nil, nil, err
		}
		return nil, nil, &internalError{CodeHandlerError, err}
	}
	next = state
	for _, e := range events {
		if e == nil {
			return nil, nil, &internalError{CodeHandlerError, errors.New("decide returned a nil event")}
		}
		next = bt.handler.ApplyEvent(next, e)
	}
	return events, next, nil
}

// remember records a decided command for deduplication, keeping the window.
func (p *Processor) remember(a *aggState, commandID string, rep wire.Reply) {
	rc := wire.Remember(rep)
	rc.CommandID = commandID
	a.recent = append(a.recent, rc)
	a.rememberEncoded()
	if over := len(a.recent) - p.cfg.DedupeWindow; over > 0 {
		// Re-slice instead of copying the window on every command: append
		// moves it to a new array once the old one is used up, so the copy
		// happens once per window, not once per command. The aggregate is
		// owned by one batch at a time, so nothing else sees the array.
		a.recent = a.recent[over:]
		if a.recentEnc != nil {
			a.recentEnc = a.recentEnc[over:]
		}
	}
	a.dirty = true
}

// reject answers a command that cannot be handled and dead-letters it.
func (p *Processor) reject(b *batch, r *kgo.Record, meta *commandMeta, base wire.Reply, err error) {
	var ie *invalidError
	var xe *internalError
	base.Message = err.Error()
	switch {
	case errors.As(err, &ie):
		base.Status, base.Code, base.Message = wire.StatusInvalid, ie.code, ie.err.Error()
	case errors.As(err, &xe):
		base.Status, base.Code, base.Message = wire.StatusInternalError, xe.code, xe.err.Error()
	default:
		base.Status, base.Code = wire.StatusInternalError, CodeHandlerError
	}
	p.log.Warn("command dead-lettered", "partition", r.Partition, "offset", r.Offset, "command", meta.commandID, "status", base.Status, "err", err)
	p.reply(b, r, meta, base)
	p.deadLetter(b, r, err)
}

// reply produces the reply to a command, in the command's encoding, to its
// reply address.
func (p *Processor) reply(b *batch, r *kgo.Record, meta *commandMeta, rep wire.Reply) {
	b.countReply(rep.Status)
	p.cfg.Observer.Replied(r.Partition, r.Offset, rep.Status, rep.Duplicate, r.Timestamp)
	n, err := p.topics.partitions(meta.reply.topic)
	if err != nil {
		p.log.Warn("reply not sent: reply topic unusable", "partition", r.Partition, "offset", r.Offset, "command", meta.commandID, "topic", meta.reply.topic, "err", err)
		return
	}
	val, err := p.reg.EncodeReply(rep, meta.reply.contentType)
	if err != nil {
		b.fail(fmt.Errorf("encode reply: %w", err))
		return
	}
	part := meta.reply.partition
	if part < 0 || part >= n {
		key := meta.reply.correlationID
		if key == nil {
			key = r.Key
		}
		part = PartitionFor(key, n)
	}
	headers := []kgo.RecordHeader{
		{Key: wire.HeaderCommandID, Value: []byte(meta.commandID)},
		{Key: wire.HeaderContentType, Value: []byte(meta.reply.contentType)},
		{Key: wire.HeaderVersion, Value: itoa(rep.Version)},
	}
	if meta.reply.correlationID != nil {
		headers = append(headers, kgo.RecordHeader{Key: wire.HeaderCorrelationID, Value: meta.reply.correlationID})
	}
	p.produce(b, &kgo.Record{Topic: meta.reply.topic, Partition: part, Key: r.Key, Value: val, Headers: headers}, nil)
}

// deadLetter copies a command, byte for byte with its headers, to the dead
// letter topic, adding where it came from and why.
func (p *Processor) deadLetter(b *batch, r *kgo.Record, cause error) {
	n, err := p.topics.partitions(p.cfg.Topics.DeadLetters)
	if err != nil {
		b.fail(fmt.Errorf("dead-letter topic: %w", err))
		return
	}
	b.deadLetters++
	p.cfg.Observer.DeadLettered(r.Partition)
	headers := append([]kgo.RecordHeader(nil), r.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: wire.HeaderDLQError, Value: []byte(cause.Error())},
		kgo.RecordHeader{Key: wire.HeaderDLQTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: wire.HeaderDLQPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: wire.HeaderDLQOffset, Value: itoa(r.Offset)},
	)
	p.produce(b, &kgo.Record{
		Topic:     p.cfg.Topics.DeadLetters,
		Partition: PartitionFor(r.Key, n),
		Key:       r.Key,
		Value:     r.Value,
		Headers:   headers,
	}, nil)
}

// PartitionFor is the partition Kafka's default (murmur2) partitioner picks
// for key among n partitions: the only partitioner that keeps one writer per
// aggregate across client languages.
func PartitionFor(key []byte, n int32) int32 {
	return int32(keyPartitioner.Partition(&kgo.Record{Key: key}, int(n)))
}

var keyPartitioner = kgo.StickyKeyPartitioner(nil).ForTopic("")

// topicCache knows the partition counts of reply and dead-letter topics.
// Unknown topics are looked up again at most once a second, so a client
// naming a missing reply topic cannot slow the worker down.
type topicCache struct {
	cl     *kgo.Client
	mu     sync.Mutex
	counts map[string]int32
	misses map[string]time.Time
}

func newTopicCache(cl *kgo.Client) *topicCache {
	return &topicCache{cl: cl, counts: map[string]int32{}, misses: map[string]time.Time{}}
}

var errNoTopic = errors.New("topic does not exist")

func (c *topicCache) partitions(topic string) (int32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.counts[topic]; ok {
		return n, nil
	}
	if t, ok := c.misses[topic]; ok && time.Since(t) < time.Second {
		return 0, fmt.Errorf("%s: %w", topic, errNoTopic)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	found, err := describeTopics(ctx, c.cl, topic)
	if err == nil {
		if n, ok := found[topic]; ok && n > 0 {
			c.counts[topic] = n
			return n, nil
		}
		err = errNoTopic
	}
	c.misses[topic] = time.Now()
	return 0, fmt.Errorf("%s: %w", topic, err)
}
