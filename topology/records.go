package topology

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/wire"
)

// This file and records_stored.go are the one place where Kafka records
// become domain values and domain values become records: here commands, there
// the snapshots, events and replies kcqrs writes.

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
	// CodeTooLarge (INVALID): the command record (key, value and headers)
	// is larger than the processor's --max-command-bytes (default 900 KiB).
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
	// command than kcqrs_command_type names, or a string that is not UTF-8.
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
	// The error of each header's last occurrence: the last one counts,
	// also when an earlier one was malformed.
	var ctErr, rpErr, evErr, dlErr error
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
				rpErr = fmt.Errorf("%s: want 4 bytes (big-endian int32), got %d", h.Key, len(h.Value))
				m.reply.partition, m.reply.partitionSet = -1, false
				continue
			}
			rpErr = nil
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
			m.expected, evErr = parseExpectation(string(h.Value))
		case wire.HeaderDeadline:
			m.deadline, dlErr = parseDeadline(h.Value)
		}
	}
	for _, err := range []error{rpErr, evErr, dlErr} {
		if err != nil {
			errs = append(errs, err)
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
	} else if !utf8.ValidString(m.commandID) {
		// Header values are UTF-8 (the contract); a JSON reply could not
		// carry this id unaltered, so its client could not match it.
		errs = append(errs, fmt.Errorf("%s is not UTF-8 text", wire.HeaderCommandID))
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
	if len(errs) > 0 {
		errs = append(errs, misnamedHeaders(r.Headers)...)
	}
	if err := errors.Join(errs...); err != nil {
		return m, &invalidError{code, err}
	}
	return m, nil
}

// commandHeaders are the headers a command's handling reads.
var commandHeaders = []string{wire.HeaderCommandID, wire.HeaderAggregateType, wire.HeaderCommandType,
	wire.HeaderContentType, wire.HeaderExpectedVersion, wire.HeaderDeadline, wire.HeaderCorrelationID,
	wire.HeaderReplyTopic, wire.HeaderReplyPartition, wire.HeaderSignature}

// misnamedHeaders names the headers of a refused command that are one the
// processor reads, written in another case (Content-Type): header names are
// case-sensitive, and the answer should say why such a header was missed.
func misnamedHeaders(hs []kgo.RecordHeader) []error {
	var errs []error
	for _, h := range hs {
		for _, name := range commandHeaders {
			if h.Key != name && strings.EqualFold(h.Key, name) {
				errs = append(errs, fmt.Errorf("header %q is not %s: header names are case-sensitive", h.Key, name))
				break
			}
		}
		if len(errs) == len(commandHeaders) {
			break
		}
	}
	return errs
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

// parseDeadline reads an RFC 3339 date-time (section 5.6): "T" and "Z" may
// be lower case, the fraction has any number of digits, the offset is Z or
// +hh:mm / -hh:mm. time.Parse alone is more lenient (one-digit hours, comma
// fractions, offsets such as +24:00) and refuses lower case.
func parseDeadline(v []byte) (time.Time, error) {
	if t, ok := rfc3339(v); ok {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s: %q is not an RFC 3339 date-time (like 2030-01-02T03:04:05Z or 2030-01-02T04:04:05.5+01:00)",
		wire.HeaderDeadline, capText(string(v), 100))
}

func rfc3339(v []byte) (time.Time, bool) {
	digits := func(b []byte) bool {
		for _, c := range b {
			if c < '0' || c > '9' {
				return false
			}
		}
		return len(b) > 0
	}
	const n = len("2006-01-02T15:04:05")
	if len(v) < n+1 || !digits(v[0:4]) || v[4] != '-' || !digits(v[5:7]) || v[7] != '-' || !digits(v[8:10]) ||
		(v[10] != 'T' && v[10] != 't') || !digits(v[11:13]) || v[13] != ':' || !digits(v[14:16]) || v[16] != ':' || !digits(v[17:19]) {
		return time.Time{}, false
	}
	i := n
	if v[i] == '.' {
		j := i + 1
		for j < len(v) && v[j] >= '0' && v[j] <= '9' {
			j++
		}
		if j == i+1 {
			return time.Time{}, false
		}
		i = j
	}
	switch zone := v[i:]; {
	case len(zone) == 1 && (zone[0] == 'Z' || zone[0] == 'z'):
	case len(zone) == 6 && (zone[0] == '+' || zone[0] == '-') && digits(zone[1:3]) && zone[3] == ':' && digits(zone[4:6]):
		if zone[1] > '2' || (zone[1] == '2' && zone[2] > '3') || zone[4] > '5' {
			return time.Time{}, false
		}
	default:
		return time.Time{}, false
	}
	s := []byte(string(v))
	s[10] = 'T'
	if s[len(s)-1] == 'z' {
		s[len(s)-1] = 'Z'
	}
	t, err := time.Parse(time.RFC3339Nano, string(s))
	return t, err == nil
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
	// The contract's version is canonical decimal: ParseInt alone would
	// also take "+5" and "007".
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || s[0] < '0' || s[0] > '9' || (s[0] == '0' && len(s) > 1) {
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

// checkStringsUTF8 refuses a command with a string that is not UTF-8:
// Avro strings are (the JSON decoder refuses other bytes; the binary one
// keeps them as they are).
func checkStringsUTF8(cmd aggregates.Command) error {
	if path, bad := notUTF8(reflect.ValueOf(cmd)); bad {
		return invalid(CodeUndecodable, "%s: %s is not UTF-8 (Avro strings are)", cmd.CommandType(), path)
	}
	return nil
}

// notUTF8 reports whether a string in v is not UTF-8, and the path to it
// (by the fields' avro names).
func notUTF8(v reflect.Value) (string, bool) {
	switch v.Kind() {
	case reflect.String:
		return "", !utf8.ValidString(v.String())
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return notUTF8(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if path, bad := notUTF8(v.Field(i)); bad {
				f := v.Type().Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("avro"), ",")
				if name == "" {
					name = f.Name
				}
				return joinPath(name, path), true
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return "", false // Avro bytes or fixed
		}
		for i := range v.Len() {
			if path, bad := notUTF8(v.Index(i)); bad {
				return joinPath("["+strconv.Itoa(i)+"]", path), true
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if _, bad := notUTF8(it.Key()); bad {
				return "a map key", true
			}
			if path, bad := notUTF8(it.Value()); bad {
				return joinPath(fmt.Sprintf("[%q]", it.Key().String()), path), true
			}
		}
	}
	return "", false
}

func joinPath(a, b string) string {
	switch {
	case b == "":
		return a
	case b[0] == '[':
		return a + b
	}
	return a + "." + b
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
