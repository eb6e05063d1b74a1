package topology

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/wire"
)

// handle runs one command through the pipeline: parse, check the reply
// address, route, decode, check a restricted command's signature, load,
// dedupe, deadline, expected version, decide, evolve, emit. Every outcome produces exactly one reply (when a reply address can
// be read and the reply topic exists) inside the open transaction; input the
// processor cannot handle is also dead-lettered. Every output is built and
// sized before any is produced (output.go): a command whose outputs cannot
// be written is answered and dead-lettered alone, without effect.
func (p *Processor) handle(b *batch, ps *partitionState, r *kgo.Record) {
	meta, err := parseCommandMetaNames(r, p.cfg.Topics.Replies, p.names)
	// One clock reading per command: its deadline, its events' timestamps
	// and its output records' timestamps (franz-go reads the clock for
	// every record it is given without one).
	meta.now = p.cfg.Now()
	base := wire.Reply{CommandID: meta.commandID, AggregateType: meta.aggregateType, AggregateID: meta.aggregateID}
	// The reply address first: even a command with broken headers must not
	// get its answer written where it says.
	if aerr := p.checkReplyAddress(r, &meta); aerr != nil {
		err = aerr
	}
	if err == nil && len(r.Key) == 0 {
		err = invalid(CodeMissingKey, "command has no key (the aggregate id)")
	}
	if size := recordBytes(r); err == nil && size > p.cfg.MaxCommandBytes {
		err = invalid(CodeTooLarge, "command record is %d bytes (key, value and headers), more than the limit of %d", size, p.cfg.MaxCommandBytes)
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
	if meta.commandType == EraseCommandType {
		p.handleErase(b, ps, r, &meta, bt, base)
		return
	}
	// An erased aggregate takes only the restricted (signed) commands of a
	// process that started before the erasure (the transfer saga's legs),
	// so that the process ends; the check below comes before the dedupe
	// window for every other command.
	ent := p.reg.ringEntry(meta.aggregateType, meta.aggregateID)
	erased := ent.Erased()
	if erased && (meta.commandType == "" || !p.cfg.restricted(meta.aggregateType, meta.commandType)) {
		p.replyErased(b, r, &meta, base)
		return
	}
	cmd, err := bt.decodeCommand(&meta, r.Value)
	if err == nil {
		// After decoding (an Avro command may name its type by its schema
		// alone), before the dedupe window is read (signing.go).
		err = p.checkSignature(r, &meta, cmd.CommandType())
	}
	if err == nil && !p.cfg.restricted(meta.aggregateType, cmd.CommandType()) {
		// Not the restricted commands (the saga's legs, signed): they
		// carry aggregate ids, which are keys and may be any bytes, and
		// must end their transfer.
		err = checkStringsUTF8(cmd)
	}
	if err != nil {
		p.reject(b, r, &meta, base, err)
		return
	}
	if erased && !p.cfg.restricted(meta.aggregateType, cmd.CommandType()) {
		p.replyErased(b, r, &meta, base)
		return
	}
	a, err := p.load(ps, bt, meta.aggregateID)
	if err != nil && p.deferForRebuild(b, ps, r, err) {
		return // rebuilt outside the transaction, then handled again
	}
	if err != nil && p.deferUnreadable(ps, r, err) {
		return // its partition waits for a build that reads it (unreadable.go)
	}
	if err != nil && p.refuseKeyLost(b, r, &meta, base, err) {
		return // that aggregate alone: its partition goes on (unreadable.go)
	}
	if err != nil {
		// The store could not be read (data it holds but this build
		// cannot decode was deferred above): fail the batch rather than
		// act on a wrong state. It is retried; the error is logged loudly.
		b.fail(fmt.Errorf("load %s/%s: %w", meta.aggregateType, meta.aggregateID, err))
		p.log.Error("cannot load aggregate", "partition", r.Partition, "offset", r.Offset, "command", meta.commandID, "type", meta.aggregateType, "id", meta.aggregateID, "err", err)
		return
	}
	base.Version = a.version
	if erased && a.version == 0 {
		// No snapshot of the erased aggregate: erased before it existed,
		// or by a release that tombstoned the snapshot. Its version is
		// unknown here, and an event at version 1 could duplicate one in
		// its history: rejected, as every command on it.
		p.replyErased(b, r, &meta, base)
		return
	}

	for i := len(a.recent) - 1; i >= 0; i-- {
		if sameID(a.recent[i].CommandID, meta.commandID) {
			// The aggregate is the one the command names (its snapshot key),
			// so the rebuilt reply is the original one.
			rep := a.recent[i].Resend(meta.aggregateType, meta.aggregateID)
			b.duplicates++
			p.reply(b, r, &meta, rep)
			return
		}
	}
	if !meta.deadline.IsZero() && meta.now.After(meta.deadline) {
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
	if rw, ok := cmd.(aggregates.RefusedWhenErased); ok && erased && err == nil && len(events) > 0 {
		// Accepted by the domain, refused because the aggregate was erased
		// (a credit to an erased account is refunded, never paid).
		events, newState, err = refuseErased(bt, a.state, rw)
	}
	if err != nil {
		rej, ok := aggregates.AsRejection(err)
		if !ok {
			p.reject(b, r, &meta, base, err)
			return
		}
		base.Status, base.Code, base.Message = wire.StatusRejected, rej.Code, capMessage(rej.Message)
		if a.version == 0 {
			// An aggregate that never existed stays that way: remembering
			// the rejection would write a snapshot for any id a client
			// makes up. A retry is decided again, with the same answer.
			p.reply(b, r, &meta, base)
			return
		}
		next := *a
		p.remember(&next, meta.commandID, base)
		p.commit(b, r, &meta, a, &next, nil, base, ent)
		return
	}
	if len(events) > 0 {
		if ent, err = p.ensureKey(b, ps.p, a, ent); err != nil {
			b.fail(fmt.Errorf("data key of %s: %w", a.key, err))
			return
		}
	}
	now := meta.now
	evRecs := make([]*kgo.Record, len(events))
	for i, e := range events {
		version := a.version + int64(i) + 1
		enc, err := p.reg.encodeEvent(a, version, meta.commandID, now, e)
		if err != nil {
			p.reject(b, r, &meta, base, &internalError{CodeEncodeFailed, err})
			return
		}
		ev := newOutRecord(4)
		ev.Topic, ev.Partition, ev.Key, ev.Value, ev.Timestamp = p.cfg.Topics.Events, ps.p, r.Key, enc, now
		ev.Headers[0] = kgo.RecordHeader{Key: wire.HeaderEventType, Value: p.small.str(e.EventType())}
		ev.Headers[1] = kgo.RecordHeader{Key: wire.HeaderAggregateType, Value: p.small.str(meta.aggregateType)}
		ev.Headers[2] = kgo.RecordHeader{Key: wire.HeaderVersion, Value: p.small.itoa(version)}
		ev.Headers[3] = kgo.RecordHeader{Key: wire.HeaderCommandID, Value: meta.commandIDBytes}
		evRecs[i] = &ev.Record
		if !p.fits(evRecs[i]) {
			p.answerAlone(b, r, &meta, base, p.outputTooLarge(fmt.Sprintf("event %d (%s)", i+1, e.EventType()), evRecs[i]))
			return
		}
	}
	if len(events) == 0 && a.version == 0 {
		// Accepted without effect on an aggregate that never existed: as
		// for a rejection, remembering it would write a snapshot for any id
		// a client makes up. A retry is decided again, with the same answer.
		accepted := base
		accepted.Status = wire.StatusAccepted
		p.reply(b, r, &meta, accepted)
		return
	}
	next := *a
	next.version += int64(len(events))
	next.state = newState
	accepted := base
	accepted.Status, accepted.Version, accepted.Events = wire.StatusAccepted, next.version, int32(len(events))
	p.remember(&next, meta.commandID, accepted)
	p.commit(b, r, &meta, a, &next, evRecs, accepted, ent)
}

// commit finishes a command that changes its aggregate (events, or a
// remembered rejection): it sizes the reply and the aggregate's new
// snapshot, and only when every output fits does it apply next to a and
// produce the events and the reply. Otherwise the command is isolated and a
// keeps nothing of it. ent is the aggregate's keyring entry of this command
// (nil: looked up when sealing).
func (p *Processor) commit(b *batch, r *kgo.Record, meta *commandMeta, a, next *aggState, events []*kgo.Record, rep wire.Reply, ent *shred.Entry) {
	refused := rep
	refused.Version, refused.Events = a.version, 0
	snap, err := p.reg.encodeSnapshotFreshEntry(next, ent)
	if err != nil {
		p.reject(b, r, meta, refused, &internalError{CodeEncodeFailed, err})
		return
	}
	// Sized as the changelog record flushSnapshots makes of it (no headers).
	snapSize := func() int { return kvRecordBytes(len(next.key), len(snap)) }
	// The dedupe window is part of every snapshot: many small commands can
	// make it outgrow a record even though the state fits. Forget the
	// oldest remembered commands rather than refuse every later command on
	// the aggregate (which any client could otherwise cause); the newest,
	// this command's, stays.
	for snapSize() > p.outputLimit() && len(next.recent) > 1 {
		drop := oldestToForget(next, snapSize()-p.outputLimit())
		next.recent = next.recent[drop:]
		if next.recentEnc != nil {
			next.recentEnc = next.recentEnc[drop:]
		}
		if snap, err = p.reg.encodeSnapshotFreshEntry(next, ent); err != nil {
			p.reject(b, r, meta, refused, &internalError{CodeEncodeFailed, err})
			return
		}
		p.log.Warn("snapshot over the record limit: the dedupe window is shortened", "partition", r.Partition, "offset", r.Offset, "command", meta.commandID, "key", capMessage(next.key), "forgotten", drop, "remembered", len(next.recent))
	}
	if snapSize() > p.outputLimit() {
		snapRec := &kgo.Record{Topic: p.cfg.Topics.Changelog, Partition: r.Partition, Key: []byte(next.key), Value: snap}
		p.answerAlone(b, r, meta, refused, p.outputTooLarge("snapshot", snapRec))
		return
	}
	replyRec, ok := p.replyRecord(b, r, meta, rep, false)
	if ok && replyRec != nil && !p.fits(replyRec) {
		p.answerAlone(b, r, meta, refused, p.outputTooLarge("reply", replyRec))
		return
	}
	if !ok {
		return // the batch failed (a transient lookup); it comes again
	}
	next.snap = snap
	*a = *next
	for _, e := range events {
		p.produce(b, e, nil)
	}
	b.events += int64(len(events))
	if replyRec != nil { // nil: dropped (its topic is gone), counted and logged
		p.sendReply(b, r, rep, replyRec)
	}
}

// sameID is a == b, testing the last byte first: ids that share a long
// prefix (a client's prefix and a counter) usually differ there, and the
// window is searched for every command.
func sameID(a, b string) bool {
	return len(a) == len(b) && (len(a) == 0 || a[len(a)-1] == b[len(b)-1]) && a == b
}

// oldestToForget returns how many of a's oldest remembered commands (at
// least one, never the newest) hold at least excess bytes of its snapshot.
func oldestToForget(a *aggState, excess int) int {
	n, size := 0, 0
	for n < len(a.recent)-1 && (n == 0 || size < excess) {
		if a.recentEnc != nil {
			size += len(a.recentEnc[n])
		} else {
			rc := &a.recent[n]
			size += len(rc.CommandID) + len(rc.Reply.Code) + len(rc.Reply.Message) + len(rc.Reply.Status) + 16
		}
		n++
	}
	return n
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

// refuseErased is the refusal event of cmd on an erased aggregate, applied to
// state.
func refuseErased(bt *boundType, state any, cmd aggregates.RefusedWhenErased) (events []aggregates.Event, next any, err error) {
	defer func() {
		if v := recover(); v != nil {
			events, next = nil, nil
			err = &internalError{CodeHandlerPanic, fmt.Errorf("panic refusing %s on an erased aggregate: %v\n%s", cmd.CommandType(), v, debug.Stack())}
		}
	}()
	ev := cmd.RefusedWhenErased()
	if ev == nil {
		return nil, nil, &internalError{CodeHandlerError, fmt.Errorf("%s: RefusedWhenErased returned a nil event", cmd.CommandType())}
	}
	return []aggregates.Event{ev}, bt.handler.ApplyEvent(state, ev), nil
}

// replyErased answers a command on an erased aggregate: REJECTED, erased.
func (p *Processor) replyErased(b *batch, r *kgo.Record, meta *commandMeta, base wire.Reply) {
	base.Status, base.Code = wire.StatusRejected, CodeErased
	base.Message = "the aggregate was erased"
	p.reply(b, r, meta, base)
}

// remember records a decided command for deduplication, keeping the window.
func (p *Processor) remember(a *aggState, commandID string, rep wire.Reply) {
	rep.Message = capMessage(rep.Message)
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
	p.log.Warn("command dead-lettered", "partition", r.Partition, "offset", r.Offset, "command", meta.commandID, "status", base.Status, "err", capMessage(err.Error()))
	p.reply(b, r, meta, base)
	p.deadLetter(b, r, err)
}

// reply answers a command that has no effect (or whose effect is already
// in the log: a duplicate). A reply too large for a record is shrunk (no
// key, a short message); one that still does not fit, or whose topic does
// not exist, is dropped, counted and logged.
func (p *Processor) reply(b *batch, r *kgo.Record, meta *commandMeta, rep wire.Reply) {
	rec, ok := p.replyRecord(b, r, meta, rep, false)
	if !ok || rec == nil {
		return
	}
	if !p.fits(rec) {
		if rec, ok = p.replyRecord(b, r, meta, rep, true); !ok || rec == nil {
			return
		}
		if !p.fits(rec) {
			p.dropReply(r, meta, fmt.Sprintf("even a reply without key and message is %d bytes, over the limit of %d", recordBytes(rec), p.outputLimit()))
			return
		}
	}
	p.sendReply(b, r, rep, rec)
}

// sendReply produces a built reply and counts it.
func (p *Processor) sendReply(b *batch, r *kgo.Record, rep wire.Reply, rec *kgo.Record) {
	b.countReply(rep.Status)
	p.cfg.Observer.Replied(r.Partition, r.Offset, rep.Status, rep.Duplicate, r.Timestamp)
	p.produce(b, rec, nil)
}

// replyRecord builds the reply record to a command, in the command's
// encoding, for its (checked) reply address; small leaves the key out and
// shortens what the reply repeats of the input. It returns ok=false when the
// batch failed (a transient metadata error: the batch is retried), and a nil
// record when the reply is dropped (its topic does not exist or may not be
// written: counted and logged).
func (p *Processor) replyRecord(b *batch, r *kgo.Record, meta *commandMeta, rep wire.Reply, small bool) (*kgo.Record, bool) {
	ra := &meta.reply
	n, err := p.topics.partitionsFor(ra.topic, ra.partition)
	if err != nil {
		if errors.Is(err, ErrTransientMetadata) {
			b.fail(fmt.Errorf("reply topic of command %s: %w", meta.commandID, err))
			p.log.Warn("reply topic metadata unavailable; the batch is retried", "partition", r.Partition, "offset", r.Offset, "command", meta.commandID, "topic", ra.topic, "err", err)
			return nil, false
		}
		p.dropReply(r, meta, err.Error())
		return nil, true
	}
	rep.Message = capMessage(rep.Message)
	key := r.Key
	if small {
		// Cut at rune boundaries: a reply's strings stay UTF-8 (Avro
		// strings are, for every reader).
		key = nil
		rep.AggregateID = truncateRunes(rep.AggregateID, 256)
		rep.Message = wire.Truncate(rep.Message, 256)
	}
	val, err := p.reg.EncodeReply(rep, ra.contentType)
	if err != nil {
		b.fail(fmt.Errorf("encode reply: %w", err))
		return nil, false
	}
	part := ra.partition
	if !ra.partitionSet || part < 0 || part >= n {
		hk := ra.correlationID
		if hk == nil {
			hk = r.Key
		}
		part = PartitionFor(hk, n)
	}
	nh := 3
	if ra.correlationID != nil {
		nh = 4
	}
	rec := newOutRecord(nh)
	rec.Topic, rec.Partition, rec.Key, rec.Value, rec.Timestamp = ra.topic, part, key, val, meta.now
	idBytes := meta.commandIDBytes
	if len(idBytes) != len(meta.commandID) {
		idBytes = p.small.str(meta.commandID)
	}
	rec.Headers[0] = kgo.RecordHeader{Key: wire.HeaderCommandID, Value: idBytes}
	rec.Headers[1] = kgo.RecordHeader{Key: wire.HeaderContentType, Value: contentTypeBytes(ra.contentType)}
	rec.Headers[2] = kgo.RecordHeader{Key: wire.HeaderVersion, Value: p.small.itoa(rep.Version)}
	if ra.correlationID != nil {
		rec.Headers[3] = kgo.RecordHeader{Key: wire.HeaderCorrelationID, Value: ra.correlationID}
	}
	return &rec.Record, true
}

// The content types' header values, shared (never written).
var (
	contentTypeAvro = []byte(wire.ContentTypeAvro)
	contentTypeJSON = []byte(wire.ContentTypeJSON)
)

func contentTypeBytes(ct string) []byte {
	switch ct {
	case wire.ContentTypeAvro:
		return contentTypeAvro
	case wire.ContentTypeJSON:
		return contentTypeJSON
	}
	return []byte(ct)
}

// dropReply counts and logs a reply that cannot be delivered. The command
// itself is handled: only definitive errors (no such topic, not
// authorized, too large) drop a reply.
func (p *Processor) dropReply(r *kgo.Record, meta *commandMeta, why string) {
	p.mu.Lock()
	p.stats.RepliesDropped++
	p.mu.Unlock()
	if o, ok := p.cfg.Observer.(ReplyDropObserver); ok {
		o.ReplyDropped(r.Partition, meta.reply.topic, why)
	}
	p.log.Warn("reply dropped", "partition", r.Partition, "offset", r.Offset, "command", meta.commandID, "topic", meta.reply.topic, "reason", why)
}

// deadLetter copies a command, byte for byte with its headers, to the dead
// letter topic, adding where it came from and why. A copy too large for a
// record keeps the headers and the pointer (topic, partition, offset) but
// not the value; if even that is too large, only the pointer and the error.
func (p *Processor) deadLetter(b *batch, r *kgo.Record, cause error) {
	p.produceDeadLetter(b, r, cause, true)
}

// produceDeadLetter copies r to the dead-letter topic with the error and
// where it came from; without its value (a pointer, marked
// kcqrs_dlq_value_omitted) when keepValue is false or the copy would not fit.
func (p *Processor) produceDeadLetter(b *batch, r *kgo.Record, cause error, keepValue bool) {
	n, err := p.topics.partitions(p.cfg.Topics.DeadLetters)
	if err != nil {
		b.fail(fmt.Errorf("dead-letter topic: %w", err))
		return
	}
	b.deadLetters++
	p.cfg.Observer.DeadLettered(r.Partition)
	ours := []kgo.RecordHeader{
		{Key: wire.HeaderDLQError, Value: []byte(wire.Truncate(cause.Error(), wire.MaxDLQErrorBytes))},
		{Key: wire.HeaderDLQTopic, Value: []byte(r.Topic)},
		{Key: wire.HeaderDLQPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		{Key: wire.HeaderDLQOffset, Value: itoa(r.Offset)},
	}
	dl := &kgo.Record{
		Topic:     p.cfg.Topics.DeadLetters,
		Partition: PartitionFor(r.Key, n),
		Key:       r.Key,
		Value:     r.Value,
		Headers:   append(append([]kgo.RecordHeader(nil), r.Headers...), ours...),
	}
	if !keepValue || !p.fits(dl) {
		omitted := kgo.RecordHeader{Key: wire.HeaderDLQValueOmitted, Value: itoa(int64(len(r.Value)))}
		dl.Value = nil
		dl.Headers = append(dl.Headers, omitted)
		if !p.fits(dl) {
			dl.Key, dl.Headers = nil, append(ours, omitted)
		}
		p.log.Warn("dead letter written without its value, with a pointer to the command", "partition", r.Partition, "offset", r.Offset, "bytes", recordBytes(r))
	}
	p.produce(b, dl, nil)
}

// PartitionFor is the partition Kafka's default (murmur2) partitioner picks
// for key among n partitions: the only partitioner that keeps one writer per
// aggregate across client languages.
//
// A nil key (a keyless command's reply or dead letter) hashes as the empty
// one: franz-go would pick a sticky random partition for it, from state
// shared by every caller.
func PartitionFor(key []byte, n int32) int32 {
	if key == nil {
		key = []byte{}
	}
	return int32(keyPartitioner.Partition(&kgo.Record{Key: key}, int(n)))
}

var keyPartitioner = kgo.StickyKeyPartitioner(nil).ForTopic("")
