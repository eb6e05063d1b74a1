package topology

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/wire"
)

// This file is the one place where Kafka records become domain values and
// domain values become records.

// expectKind is the kind of optimistic-concurrency expectation.
type expectKind uint8

const (
	expectAny expectKind = iota
	expectNoStream
	expectExists
	expectExact
)

type expectation struct {
	kind    expectKind
	version int64
}

func (e expectation) String() string {
	switch e.kind {
	case expectNoStream:
		return wire.ExpectNoStream
	case expectExists:
		return wire.ExpectExists
	case expectExact:
		return strconv.FormatInt(e.version, 10)
	}
	return wire.ExpectAny
}

// met reports whether an aggregate at version v meets the expectation.
func (e expectation) met(v int64) bool {
	switch e.kind {
	case expectNoStream:
		return v == 0
	case expectExists:
		return v > 0
	case expectExact:
		return v == e.version
	}
	return true
}

// replyAddress is where a command's reply goes.
type replyAddress struct {
	topic         string
	partition     int32 // meaningful when partitionSet; else chosen by hash
	partitionSet  bool  // the command named a partition
	correlationID []byte
	contentType   string
}

// commandMeta is everything a command's headers and key say.
type commandMeta struct {
	reply         replyAddress
	commandID     string
	commandType   string
	aggregateType string
	aggregateID   string
	expected      expectation
	deadline      time.Time
	// commandIDBytes is commandID as the header carried it, shared
	// (read-only) by the headers of the command's outputs.
	commandIDBytes []byte
	// now is when the command's handling began (Processor.handle).
	now time.Time
}

// invalidError is a command the processor cannot handle at all: it is
// answered INVALID (when possible) and dead-lettered.
type invalidError struct {
	code string
	err  error
}

func (e *invalidError) Error() string { return e.code + ": " + e.err.Error() }
func (e *invalidError) Unwrap() error { return e.err }

func invalid(code, format string, args ...any) *invalidError {
	return &invalidError{code: code, err: fmt.Errorf(format, args...)}
}

// Runtime reply codes (the domain brings its own for rejections). Each
// comment is the code's entry in docs/wire-contract.md (generated; a code
// without a comment fails TestWireContract).
const (
	// CodeBadHeader (INVALID): a kcqrs header is missing or malformed
	// (kcqrs_command_id, kcqrs_aggregate_type, kcqrs_expected_version,
	// kcqrs_deadline, kafka_replyPartition), or a JSON command has no
	// kcqrs_command_type.
	CodeBadHeader = "bad_header"
	// CodeMissingKey (INVALID): the record has no key (the aggregate id).
	CodeMissingKey = "missing_key"
	// CodeTooLarge (INVALID): the value is larger than the processor's
	// --max-command-bytes.
	CodeTooLarge = "too_large"
	// CodeUnknownAggregate (INVALID): no aggregate type of that name is
	// served; the message lists the served ones.
	CodeUnknownAggregate = "unknown_aggregate_type"
	// CodeUnknownCommand (INVALID): the aggregate type has no command of
	// that name; the message lists its commands.
	CodeUnknownCommand = "unknown_command_type"
	// CodeUndecodable (INVALID): the value is not the command's schema:
	// bad JSON (unknown field, wrong type, a string or float for a long),
	// or not Avro single-object encoded with a known schema, or another
	// command than kcqrs_command_type names.
	CodeUndecodable = "undecodable"
	// CodeWrongPartition (WRONG_PARTITION): the key hashes (Kafka's
	// murmur2) to another partition than the one the record is on.
	CodeWrongPartition = "wrong_partition"
	// CodeVersionConflict (CONFLICT): kcqrs_expected_version does not match
	// the aggregate's version (the reply carries the current one).
	CodeVersionConflict = "version_conflict"
	// CodeExpired (EXPIRED): kcqrs_deadline had passed when the command's
	// turn came; it had no effect.
	CodeExpired = "deadline_exceeded"
	// CodeHandlerPanic (INTERNAL_ERROR): the aggregate's decide or evolve
	// panicked; nothing was written but the reply and the dead letter.
	CodeHandlerPanic = "handler_panic"
	// CodeHandlerError (INTERNAL_ERROR): decide returned an error that is
	// not a rejection.
	CodeHandlerError = "handler_error"
	// CodeEncodeFailed (INTERNAL_ERROR): an event the handler returned
	// could not be encoded with its schema.
	CodeEncodeFailed = "encode_failed"
	// CodeUnsupportedContent (INVALID): content-type is neither
	// application/json nor application/vnd.kcqrs.avro, or the value looks
	// like JSON without content-type: application/json. Answered in JSON
	// when the value looks like JSON.
	CodeUnsupportedContent = "unsupported_content_type"
	// CodeBadReplyAddress (INVALID): kafka_replyTopic names a topic that is
	// not an allowed reply topic (the topology's own, internal and __* topics
	// never are), or kafka_replyPartition is out of its range; answered on
	// the default reply topic.
	CodeBadReplyAddress = "bad_reply_address"
	// CodeOutputTooLarge (INVALID): an output of the command (reply, event,
	// snapshot) would be larger than a record may be; the command is
	// isolated and has no effect.
	CodeOutputTooLarge = "output_too_large"
)

// parseCommandMeta reads the reply address first, leniently, so that even a
// command with broken headers can be answered; then everything else.
func parseCommandMeta(r *kgo.Record, defaultReplyTopic string) (commandMeta, error) {
	return parseCommandMetaNames(r, defaultReplyTopic, nil)
}

// parseCommandMetaNames is parseCommandMeta taking the aggregate and command
// type names from names (the served ones, Processor.names) when they are
// there, instead of a copy per command.
func parseCommandMetaNames(r *kgo.Record, defaultReplyTopic string, names map[string]string) (commandMeta, error) {
	m := commandMeta{reply: replyAddress{topic: defaultReplyTopic, partition: -1, contentType: wire.ContentTypeAvro}}
	m.aggregateID = string(r.Key)
	var errs []error
	code, declared := CodeBadHeader, false
	var ctErr error // of the last content-type header
	for _, h := range r.Headers {
		switch h.Key {
		case wire.HeaderCorrelationID:
			m.reply.correlationID = h.Value
		case wire.HeaderReplyTopic:
			if len(h.Value) > 0 {
				m.reply.topic = string(h.Value)
			}
		case wire.HeaderReplyPartition:
			if len(h.Value) != 4 {
				errs = append(errs, fmt.Errorf("%s: want 4 bytes (big-endian int32), got %d", h.Key, len(h.Value)))
				continue
			}
			m.reply.partition = int32(binary.BigEndian.Uint32(h.Value))
			m.reply.partitionSet = true
		case wire.HeaderContentType:
			switch string(h.Value) { // the usual values, without copies
			case wire.ContentTypeAvro:
				declared, ctErr = true, nil
				m.reply.contentType = wire.ContentTypeAvro
				continue
			case wire.ContentTypeJSON:
				declared, ctErr = true, nil
				m.reply.contentType = wire.ContentTypeJSON
				continue
			}
			// Media types are case-insensitive (RFC 9110); parameters
			// (charset=utf-8) are ignored. The last header wins, as for
			// every header (Spring's lastHeader).
			ct := strings.ToLower(strings.TrimSpace(strings.SplitN(string(h.Value), ";", 2)[0]))
			declared, ctErr = true, nil
			switch ct {
			case wire.ContentTypeAvro, "":
				declared = ct != ""
				m.reply.contentType = wire.ContentTypeAvro
			case wire.ContentTypeJSON:
				m.reply.contentType = wire.ContentTypeJSON
			default:
				m.reply.contentType = wire.ContentTypeAvro
				ctErr = fmt.Errorf("%s %q is not supported: set it to %s (JSON) or %s (Avro single-object encoding)",
					wire.HeaderContentType, capText(ct, 100), wire.ContentTypeJSON, wire.ContentTypeAvro)
			}
		case wire.HeaderCommandID:
			m.commandID = string(h.Value)
			m.commandIDBytes = h.Value
		case wire.HeaderCommandType:
			m.commandType = internName(names, h.Value)
		case wire.HeaderAggregateType:
			m.aggregateType = internName(names, h.Value)
		case wire.HeaderExpectedVersion:
			e, err := parseExpectation(string(h.Value))
			if err != nil {
				errs = append(errs, err)
			}
			m.expected = e
		case wire.HeaderDeadline:
			t, err := time.Parse(time.RFC3339Nano, string(h.Value))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", h.Key, err))
			}
			m.deadline = t
		}
	}
	if ctErr != nil {
		code = CodeUnsupportedContent
		errs = append(errs, ctErr)
	}
	if m.reply.partition < -1 {
		errs = append(errs, fmt.Errorf("%s: negative partition %d", wire.HeaderReplyPartition, m.reply.partition))
	}
	if m.reply.partition < 0 {
		m.reply.partition, m.reply.partitionSet = -1, false // -1: hashed, as if absent
	}
	if len(m.commandID) > MaxCommandIDBytes {
		errs = append(errs, fmt.Errorf("%s is %d bytes, at most %d are allowed", wire.HeaderCommandID, len(m.commandID), MaxCommandIDBytes))
		m.commandID = capMessage(m.commandID)
		m.commandIDBytes = []byte(m.commandID)
	}
	if m.commandID == "" {
		errs = append(errs, fmt.Errorf("missing %s header", wire.HeaderCommandID))
	}
	if m.aggregateType == "" {
		errs = append(errs, fmt.Errorf("missing %s header", wire.HeaderAggregateType))
	}
	// A value that is not Avro but looks like JSON, sent without a JSON
	// content type, is not read as JSON (the header says what a value is,
	// never a guess), but it is answered in JSON, naming the header to set.
	if m.reply.contentType != wire.ContentTypeJSON && looksLikeJSON(r.Value) {
		m.reply.contentType = wire.ContentTypeJSON
		if !declared && code == CodeBadHeader {
			code = CodeUnsupportedContent
			errs = append(errs, fmt.Errorf("the value looks like JSON but has no %s header: set %s: %s (Avro values need no header)",
				wire.HeaderContentType, wire.HeaderContentType, wire.ContentTypeJSON))
		} else if declared && code == CodeBadHeader {
			code = CodeUnsupportedContent
			errs = append(errs, fmt.Errorf("the value looks like JSON but %s says %s: set %s: %s",
				wire.HeaderContentType, wire.ContentTypeAvro, wire.HeaderContentType, wire.ContentTypeJSON))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return m, &invalidError{code, err}
	}
	return m, nil
}

// internName returns b as a string: the served name it equals, or a copy.
func internName(names map[string]string, b []byte) string {
	if s, ok := names[string(b)]; ok {
		return s
	}
	return string(b)
}

// looksLikeJSON reports whether a value starts like a JSON object. Neither
// Avro single-object encoding (0xC3 0x01) nor the Confluent wire format
// (0x00) can start with '{' or whitespace.
func looksLikeJSON(v []byte) bool {
	for _, c := range v {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}

// capText caps a quoted piece of input so that an error never grows with it.
func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

func parseExpectation(s string) (expectation, error) {
	switch s {
	case "", wire.ExpectAny:
		return expectation{kind: expectAny}, nil
	case wire.ExpectNoStream:
		return expectation{kind: expectNoStream}, nil
	case wire.ExpectExists:
		return expectation{kind: expectExists}, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return expectation{}, fmt.Errorf("%s: %q is not a version (a number >= 0, %s, %s or %s)",
			wire.HeaderExpectedVersion, s, wire.ExpectAny, wire.ExpectNoStream, wire.ExpectExists)
	}
	return expectation{kind: expectExact, version: v}, nil
}

// decodeCommand turns a record's value into the aggregate's command type.
func (bt *boundType) decodeCommand(m *commandMeta, value []byte) (aggregates.Command, error) {
	var msg *boundMessage
	if m.commandType != "" {
		msg = bt.commands[m.commandType]
		if msg == nil {
			known := make([]string, 0, len(bt.commands))
			for name := range bt.commands {
				known = append(known, name)
			}
			sort.Strings(known)
			return nil, invalid(CodeUnknownCommand, "aggregate type %q has no command %q (its commands: %s)", bt.handler.AggregateType(), capText(m.commandType, 100), strings.Join(known, ", "))
		}
	}
	if m.reply.contentType == wire.ContentTypeJSON {
		if msg == nil {
			return nil, invalid(CodeBadHeader, "a JSON command needs the %s header", wire.HeaderCommandType)
		}
		ptr := reflect.New(msg.typ)
		if err := msg.codec.DecodeJSON(value, ptr.Interface()); err != nil {
			return nil, &invalidError{CodeUndecodable, fmt.Errorf("%s as JSON: %w", msg.name, err)}
		}
		return msg.command(ptr)
	}
	// Inside the transaction: the id was looked up before Begin
	// (schemaprep.go) unless the command came with a later poll.
	value, err := bt.reg.unframeWithin(value, schemaRegistryTxnTimeout)
	if err != nil {
		return nil, &invalidError{CodeUndecodable, err}
	}
	fp, err := schemas.Fingerprint(value)
	if err != nil {
		return nil, &invalidError{CodeUndecodable, err}
	}
	byPrint := bt.byPrint[fp]
	switch {
	case byPrint == nil:
		return nil, invalid(CodeUndecodable, "value written with unknown schema (fingerprint %016x) for aggregate type %q", fp, bt.handler.AggregateType())
	case msg == nil:
		msg = byPrint
		m.commandType = msg.name
	case msg != byPrint:
		return nil, invalid(CodeUndecodable, "header says command %q but the value is a %q", msg.name, byPrint.name)
	}
	ptr := reflect.New(msg.typ)
	if err := msg.codec.Decode(value, ptr.Interface()); err != nil {
		return nil, &invalidError{CodeUndecodable, fmt.Errorf("%s: %w", msg.name, err)}
	}
	return msg.command(ptr)
}

func (msg *boundMessage) command(ptr reflect.Value) (aggregates.Command, error) {
	v := ptr
	if !msg.ptr {
		v = ptr.Elem()
	}
	c, ok := v.Interface().(aggregates.Command)
	if !ok {
		return nil, invalid(CodeUnknownCommand, "%s does not implement aggregates.Command", v.Type())
	}
	return c, nil
}

// aggState is one aggregate's state as the processor holds it during a batch.
type aggState struct {
	key string // changelog and store key
	// node links the state into the state cache (statecache.go).
	node *cacheNode
	// keyBytes is key for the changelog record's key (made once).
	keyBytes []byte
	id       string
	bt       *boundType
	version  int64
	state    any
	recent   []wire.RecentCommand
	// recentEnc is the Avro binary of each entry of recent, kept in step by
	// remember so a snapshot copies it instead of re-encoding the window;
	// nil when not known (then the snapshot encodes recent afresh).
	recentEnc [][]byte
	dirty     bool
	encoded   []byte // the snapshot as produced, once the batch ends
	// snap is the encoded snapshot of this state, made (and sized) when
	// the last command changed it; the batch's flush reuses it.
	snap []byte
}

// snapshotKey is the changelog and store key of an aggregate. Aggregate type
// names cannot contain '/', so the key is unambiguous.
func snapshotKey(aggregateType, aggregateID string) string {
	return aggregateType + "/" + aggregateID
}

// StateSchemaError is a snapshot whose state was written with a schema the
// current state schema and upcasters cannot read (or with no known schema at
// all). The snapshot envelope was readable, so the aggregate is known: its
// state can be rebuilt from its events (Registry.ReplayState); the
// processor's store can be rebuilt from the changelog and events with the
// steps in the README ("Changing your schemas").
type StateSchemaError struct {
	Key           string
	AggregateType string
	AggregateID   string
	Version       int64 // the aggregate version the snapshot was at
	Err           error

	recent []wire.RecentCommand // kept across a rebuild, for dedupe
}

func (e *StateSchemaError) Error() string {
	return fmt.Sprintf("snapshot %q: state of %s %q at version %d is unreadable (rebuild it from its events): %v",
		e.Key, e.AggregateType, e.AggregateID, e.Version, e.Err)
}

func (e *StateSchemaError) Unwrap() error { return e.Err }

func (r *Registry) decodeSnapshot(key string, value []byte) (*aggState, error) {
	value, err := r.unframe(value)
	if err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", key, err)
	}
	s, items, err := r.fast.decodeSnapshot(value)
	if errors.Is(err, errSnapshotSchema) {
		err = r.snapshot.Decode(value, &s)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", key, err)
	}
	bt := r.types[s.AggregateType]
	if bt == nil {
		return nil, fmt.Errorf("snapshot %q: unknown aggregate type %q", key, s.AggregateType)
	}
	ptr, err := bt.decodeStatePtr(s.State)
	if err != nil {
		return nil, &StateSchemaError{Key: key, AggregateType: s.AggregateType, AggregateID: s.AggregateID, Version: s.Version, Err: err, recent: s.Recent}
	}
	// Opened in place, before the state is boxed: no copy of it.
	if err := r.open(subjectOf(s.AggregateType, s.AggregateID), ptr); err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", key, err)
	}
	state := ptr.Elem().Interface()
	return &aggState{key: key, id: s.AggregateID, bt: bt, version: s.Version, state: state, recent: s.Recent, recentEnc: items}, nil
}

// decodeState reads a state written with any known version of the state
// schema: the current one directly, older ones by resolution and upcasters.
func (bt *boundType) decodeState(data []byte) (any, error) {
	ptr, err := bt.decodeStatePtr(data)
	if err != nil {
		return nil, err
	}
	return ptr.Elem().Interface(), nil
}

// decodeStatePtr is decodeState returning a pointer to the state.
func (bt *boundType) decodeStatePtr(data []byte) (reflect.Value, error) {
	ptr := reflect.New(bt.stateType)
	if fp, err := schemas.Fingerprint(data); err == nil && fp == bt.state.Fingerprint() {
		if err := bt.state.Decode(data, ptr.Interface()); err != nil {
			return reflect.Value{}, err
		}
		return ptr, nil
	}
	recs, err := bt.upcast.Decode(data)
	if err != nil {
		return reflect.Value{}, err
	}
	if len(recs) != 1 || recs[0].Name != bt.state.ShortName() {
		names := make([]string, len(recs))
		for i, rec := range recs {
			names[i] = rec.Name
		}
		return reflect.Value{}, fmt.Errorf("state upcast to %v, want one %s", names, bt.state.ShortName())
	}
	if err := bt.state.FromNative(recs[0].Fields, ptr.Interface()); err != nil {
		return reflect.Value{}, err
	}
	return ptr, nil
}

// decodeEvents reads an event payload written with any known version of the
// aggregate type's event schemas. The current schema of eventType is read
// directly; anything else goes through resolution and upcasters, which may
// turn one stored event into several (a split) or none.
func (bt *boundType) decodeEvents(eventType string, payload []byte) ([]aggregates.Event, error) {
	if msg := bt.events[eventType]; msg != nil {
		if fp, err := schemas.Fingerprint(payload); err == nil && fp == msg.codec.Fingerprint() {
			ptr := reflect.New(msg.typ)
			if err := msg.codec.Decode(payload, ptr.Interface()); err != nil {
				return nil, fmt.Errorf("event %s: %w", eventType, err)
			}
			return []aggregates.Event{msg.event(ptr)}, nil
		}
	}
	// The envelope names the event; the payload's writer schema must be that
	// record (at some version). Only upcasters may turn it into another.
	if fp, err := schemas.Fingerprint(payload); err == nil {
		if w, ok := bt.upcast.Set().ByFingerprint(fp); ok && w.ShortName() != eventType {
			return nil, fmt.Errorf("event %s: the payload is a %s record", eventType, w.ShortName())
		}
	}
	recs, err := bt.upcast.Decode(payload)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", eventType, err)
	}
	out := make([]aggregates.Event, 0, len(recs))
	for _, rec := range recs {
		msg := bt.events[rec.Name]
		if msg == nil {
			return nil, fmt.Errorf("event %s: read as %s v%d, which is not an event of aggregate type %q", eventType, rec.Name, rec.Version, bt.handler.AggregateType())
		}
		ptr := reflect.New(msg.typ)
		if err := msg.codec.FromNative(rec.Fields, ptr.Interface()); err != nil {
			return nil, fmt.Errorf("event %s: %w", eventType, err)
		}
		out = append(out, msg.event(ptr))
	}
	return out, nil
}

func (msg *boundMessage) event(ptr reflect.Value) aggregates.Event {
	v := ptr
	if !msg.ptr {
		v = ptr.Elem()
	}
	e, _ := v.Interface().(aggregates.Event)
	return e
}

func (r *Registry) encodeSnapshot(a *aggState) ([]byte, error) {
	if a.snap != nil {
		enc := a.snap
		a.snap = nil // a.encoded keeps it from here
		return enc, nil
	}
	return r.encodeSnapshotFresh(a)
}

// encodeSnapshotFresh encodes a's snapshot, ignoring a.snap.
func (r *Registry) encodeSnapshotFresh(a *aggState) ([]byte, error) {
	return r.encodeSnapshotFreshEntry(a, nil)
}

// encodeSnapshotFreshEntry is encodeSnapshotFresh sealing with ent, a's
// keyring entry (nil: looked up).
func (r *Registry) encodeSnapshotFreshEntry(a *aggState, ent *shred.Entry) ([]byte, error) {
	state, err := r.encodeSealed(a.bt.state, ent, a.key, a.state)
	if err != nil {
		return nil, fmt.Errorf("state of %q: %w", a.key, err)
	}
	return r.encodeSnapshotEnvelope(a.bt.handler.AggregateType(), a, state)
}

// encodeSnapshotEnvelope wraps an encoded state into a's snapshot, reusing
// the encodings of the remembered commands when they are in step.
func (r *Registry) encodeSnapshotEnvelope(aggregateType string, a *aggState, state []byte) ([]byte, error) {
	s := wire.Snapshot{
		AggregateType: aggregateType,
		AggregateID:   a.id,
		Version:       a.version,
		State:         state,
		Recent:        a.recent,
	}
	var out []byte
	switch {
	case len(a.recentEnc) == len(a.recent) && (a.recentEnc != nil || len(a.recent) == 0):
		out = r.fast.encodeSnapshotItems(&s, a.recentEnc)
	default:
		enc, ok := r.fast.encodeSnapshot(&s)
		if !ok {
			var err error
			if enc, err = r.snapshot.Encode(s); err != nil {
				return nil, err
			}
		}
		out = enc
	}
	return r.frame(out)
}

func (r *Registry) encodeEvent(a *aggState, version int64, commandID string, ts time.Time, e aggregates.Event) ([]byte, error) {
	msg := a.bt.events[e.EventType()]
	if msg == nil {
		return nil, fmt.Errorf("event type %q is not listed in aggregate type %q", e.EventType(), a.bt.handler.AggregateType())
	}
	payload, err := r.encodeSealed(msg.codec, nil, a.key, e)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", e.EventType(), err)
	}
	out := r.fast.encodeEvent(&wire.Event{
		AggregateType:   a.bt.handler.AggregateType(),
		AggregateID:     a.id,
		Version:         version,
		EventType:       e.EventType(),
		CommandID:       commandID,
		TimestampMillis: ts.UnixMilli(),
		Payload:         payload,
	})
	return r.frame(out)
}

// schemaRegistryTimeout bounds one schema registry call outside a
// transaction (a schema's first use only: ids are cached).
const schemaRegistryTimeout = 10 * time.Second

// frame turns a single-object encoded envelope into the configured wire
// format. The payload inside an event envelope stays single-object encoded:
// it is bytes to the envelope's schema. It runs inside the transaction, after
// prepareSchemas registered the envelopes (schemaprep.go): a registry call
// here is an unexpected miss, bounded by schemaRegistryTxnTimeout.
func (r *Registry) frame(data []byte) ([]byte, error) {
	if r.confluent == nil {
		return data, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), schemaRegistryTxnTimeout)
	defer cancel()
	return r.confluent.FromSingleObject(ctx, data)
}

// unframe turns a value in the Confluent wire format into the single-object
// encoding when a schema registry is configured; other values pass as they
// are.
func (r *Registry) unframe(data []byte) ([]byte, error) {
	return r.unframeWithin(data, schemaRegistryTimeout)
}

// unframeWithin is unframe with a bound on the registry call.
func (r *Registry) unframeWithin(data []byte, within time.Duration) ([]byte, error) {
	if r.confluent == nil || !schemas.IsConfluent(data) {
		return data, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return r.confluent.ToSingleObject(ctx, data)
}

// DecodeEvent decodes an events-topic value into its envelope and the
// aggregate's Go event value. Events written with older schema versions are
// resolved and upcast; one that upcasts to other than exactly one event is an
// error here (use DecodeEvents).
func (r *Registry) DecodeEvent(value []byte) (wire.Event, aggregates.Event, error) {
	env, bt, err := r.decodeEventEnvelope(value)
	if err != nil {
		return env, nil, err
	}
	// The common case, an event in its current schema: no slice, and its
	// personal fields opened in the value decoded (DecodeEvents opens a
	// copy), nor a subject built when sealing is off (the projector's
	// catch-up decodes every event here).
	if msg := bt.events[env.EventType]; msg != nil {
		if fp, ferr := schemas.Fingerprint(env.Payload); ferr == nil && fp == msg.codec.Fingerprint() {
			ptr := reflect.New(msg.typ)
			if err := msg.codec.Decode(env.Payload, ptr.Interface()); err != nil {
				return env, nil, fmt.Errorf("topology: event %s: %w", env.EventType, err)
			}
			if r.shred != nil {
				if err := r.open(subjectOf(env.AggregateType, env.AggregateID), ptr); err != nil {
					return env, nil, fmt.Errorf("topology: event %s of %s %q: %w", env.EventType, env.AggregateType, env.AggregateID, err)
				}
			}
			return env, msg.event(ptr), nil
		}
	}
	events, err := r.decodeEventsOf(env, bt)
	if err != nil {
		return env, nil, err
	}
	if len(events) != 1 {
		return env, nil, fmt.Errorf("topology: event %s of %s %q at version %d upcasts to %d events; use DecodeEvents",
			env.EventType, env.AggregateType, env.AggregateID, env.Version, len(events))
	}
	return env, events[0], nil
}

// DecodeEvents decodes an events-topic value into its envelope and the
// aggregate's current Go event values: usually one, but an upcaster may
// split an old event in two or drop it. All of them carry the envelope's
// aggregate version.
func (r *Registry) DecodeEvents(value []byte) (wire.Event, []aggregates.Event, error) {
	env, bt, err := r.decodeEventEnvelope(value)
	if err != nil {
		return env, nil, err
	}
	events, err := r.decodeEventsOf(env, bt)
	return env, events, err
}

// decodeEventEnvelope decodes an events-topic value's envelope and finds
// its aggregate type.
func (r *Registry) decodeEventEnvelope(value []byte) (wire.Event, *boundType, error) {
	value, err := r.unframe(value)
	if err != nil {
		return wire.Event{}, nil, fmt.Errorf("topology: event envelope: %w", err)
	}
	env, ok := r.fast.decodeEvent(value, r.names)
	if !ok {
		// Its own variable: one whose address goes into the generic
		// codec's interface is on the heap, and env then would be on every
		// call.
		var g wire.Event
		err := r.event.Decode(value, &g)
		if env = g; err != nil {
			return env, nil, fmt.Errorf("topology: event envelope: %w", err)
		}
	}
	bt := r.types[env.AggregateType]
	if bt == nil {
		return env, nil, fmt.Errorf("topology: event: unknown aggregate type %q", env.AggregateType)
	}
	return env, bt, nil
}

// decodeEventsOf decodes env's payload into the aggregate's current events
// and opens their personal fields.
func (r *Registry) decodeEventsOf(env wire.Event, bt *boundType) ([]aggregates.Event, error) {
	events, err := bt.decodeEvents(env.EventType, env.Payload)
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	if r.shred == nil {
		return events, nil // nothing is sealed: no subject to build per event
	}
	for i, e := range events {
		opened, err := r.openValue(subjectOf(env.AggregateType, env.AggregateID), e)
		if err != nil {
			return nil, fmt.Errorf("topology: event %s of %s %q: %w", env.EventType, env.AggregateType, env.AggregateID, err)
		}
		events[i], _ = opened.(aggregates.Event)
	}
	return events, nil
}

// ReplayState folds an aggregate's events, as read from the events topic
// (values in order), into its state and version: how a state whose snapshot
// is unreadable (a *StateSchemaError) is rebuilt. Every value must belong to
// the given aggregate; versions must run 1, 2, 3, ... without gaps.
func (r *Registry) ReplayState(aggregateType, aggregateID string, values [][]byte) (state any, version int64, err error) {
	bt := r.types[aggregateType]
	if bt == nil {
		return nil, 0, fmt.Errorf("topology: replay: unknown aggregate type %q", aggregateType)
	}
	state = bt.handler.InitialState()
	for i, value := range values {
		env, events, err := r.DecodeEvents(value)
		if err != nil {
			return nil, 0, fmt.Errorf("topology: replay %s %q, value %d: %w", aggregateType, aggregateID, i, err)
		}
		if env.AggregateType != aggregateType || env.AggregateID != aggregateID {
			return nil, 0, fmt.Errorf("topology: replay %s %q: value %d belongs to %s %q", aggregateType, aggregateID, i, env.AggregateType, env.AggregateID)
		}
		if env.Version != version+1 {
			return nil, 0, fmt.Errorf("topology: replay %s %q: event version %d after %d (a gap or a duplicate)", aggregateType, aggregateID, env.Version, version)
		}
		for _, e := range events {
			state = bt.handler.ApplyEvent(state, e)
		}
		version = env.Version
	}
	return state, version, nil
}

// DecodeSnapshot decodes a changelog value into its envelope and the
// aggregate's Go state value.
func (r *Registry) DecodeSnapshot(value []byte) (wire.Snapshot, any, error) {
	a, err := r.decodeSnapshot("", value)
	if err != nil {
		return wire.Snapshot{}, nil, fmt.Errorf("topology: %w", err)
	}
	return wire.Snapshot{AggregateType: a.bt.handler.AggregateType(), AggregateID: a.id, Version: a.version, Recent: a.recent}, a.state, nil
}

// EncodeReply encodes a reply in the given content type.
func (r *Registry) EncodeReply(reply wire.Reply, contentType string) ([]byte, error) {
	if contentType == wire.ContentTypeJSON {
		if enc, ok := r.fast.encodeReplyJSON(&reply); ok {
			return enc, nil
		}
		return r.reply.EncodeJSON(reply)
	}
	if enc, ok := r.fast.encodeReply(&reply); ok {
		return enc, nil
	}
	return r.reply.Encode(reply)
}

// DecodeReply decodes a reply of the given content type.
func (r *Registry) DecodeReply(value []byte, contentType string) (wire.Reply, error) {
	var rep wire.Reply
	var err error
	if contentType == wire.ContentTypeJSON {
		err = r.reply.DecodeJSON(value, &rep)
	} else {
		err = r.reply.Decode(value, &rep)
	}
	return rep, err
}
