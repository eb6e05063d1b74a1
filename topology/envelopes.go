package topology

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/wire"
)

// The processor writes one reply per command, one envelope per event and
// one snapshot per touched aggregate, and reads a snapshot for every
// aggregate it loads. Through goavro's generic maps these envelopes cost
// more CPU than everything else in a command's path (see BENCHMARKS.md), so
// the three fixed envelope schemas are encoded and decoded here by hand,
// straight from and to their Go structs. The output is byte for byte what
// the generic codecs write (envelopes_test.go proves it against goavro on
// random values and on the golden files); anything unusual (a status that
// is not an enum symbol, a snapshot written with another schema) goes the
// generic way, so behaviour and error messages do not change.

// envelopeCodec encodes and decodes the kcqrs envelopes of one Registry.
type envelopeCodec struct {
	replyHdr, eventHdr, snapHdr [schemas.HeaderLen]byte
	snapFP, eventFP             uint64
}

func newEnvelopeCodec(reply, event, snapshot *schemas.Codec) *envelopeCodec {
	hdr := func(fp uint64) (h [schemas.HeaderLen]byte) {
		h[0], h[1] = 0xC3, 0x01
		binary.LittleEndian.PutUint64(h[2:], fp)
		return h
	}
	return &envelopeCodec{
		replyHdr: hdr(reply.Fingerprint()),
		eventHdr: hdr(event.Fingerprint()),
		snapHdr:  hdr(snapshot.Fingerprint()),
		snapFP:   snapshot.Fingerprint(),
		eventFP:  event.Fingerprint(),
	}
}

// statusSymbols are the symbols of kcqrs.ReplyStatus, in schema order.
var statusSymbols = [...]wire.Status{
	wire.StatusAccepted, wire.StatusRejected, wire.StatusConflict, wire.StatusExpired,
	wire.StatusInvalid, wire.StatusWrongPartition, wire.StatusInternalError,
}

func statusIndex(s wire.Status) (int, bool) {
	for i, sym := range statusSymbols {
		if sym == s {
			return i, true
		}
	}
	return 0, false
}

func appendLong(buf []byte, v int64) []byte {
	u := uint64(v<<1) ^ uint64(v>>63)
	for u >= 0x80 {
		buf = append(buf, byte(u)|0x80)
		u >>= 7
	}
	return append(buf, byte(u))
}

func appendAvroString(buf []byte, s string) []byte {
	buf = appendLong(buf, int64(len(s)))
	return append(buf, s...)
}

func appendAvroBytes(buf, b []byte) []byte {
	buf = appendLong(buf, int64(len(b)))
	return append(buf, b...)
}

func appendBool(buf []byte, b bool) []byte {
	if b {
		return append(buf, 1)
	}
	return append(buf, 0)
}

// appendReplyBody appends a kcqrs.Reply in Avro binary; false when the
// status is not a symbol of the enum.
func appendReplyBody(buf []byte, r *wire.Reply) ([]byte, bool) {
	st, ok := statusIndex(r.Status)
	if !ok {
		return buf, false
	}
	buf = appendAvroString(buf, r.CommandID)
	buf = appendAvroString(buf, r.AggregateType)
	buf = appendAvroString(buf, r.AggregateID)
	buf = appendLong(buf, int64(st))
	buf = appendLong(buf, r.Version)
	buf = appendLong(buf, int64(r.Events))
	buf = appendAvroString(buf, r.Code)
	buf = appendAvroString(buf, r.Message)
	return appendBool(buf, r.Duplicate), true
}

// encodeReply returns the reply in single-object encoding, or false.
func (c *envelopeCodec) encodeReply(r *wire.Reply) ([]byte, bool) {
	buf := make([]byte, schemas.HeaderLen, 64+len(r.CommandID)+len(r.AggregateType)+len(r.AggregateID)+len(r.Code)+len(r.Message))
	copy(buf, c.replyHdr[:])
	return appendReplyBody(buf, r)
}

// encodeReplyJSON returns the reply in the Avro JSON encoding exactly as
// schemas.Codec.EncodeJSON writes it (fields in schema order, strings
// escaped the way goavro escapes them), or false.
func (c *envelopeCodec) encodeReplyJSON(r *wire.Reply) ([]byte, bool) {
	if _, ok := statusIndex(r.Status); !ok {
		return nil, false
	}
	buf := make([]byte, 0, 160+len(r.CommandID)+len(r.AggregateType)+len(r.AggregateID)+len(r.Code)+len(r.Message))
	buf = append(buf, `{"commandId":`...)
	buf = appendGoavroJSONString(buf, r.CommandID)
	buf = append(buf, `,"aggregateType":`...)
	buf = appendGoavroJSONString(buf, r.AggregateType)
	buf = append(buf, `,"aggregateId":`...)
	buf = appendGoavroJSONString(buf, r.AggregateID)
	buf = append(buf, `,"status":`...)
	buf = appendGoavroJSONString(buf, string(r.Status))
	buf = append(buf, `,"version":`...)
	buf = strconv.AppendInt(buf, r.Version, 10)
	buf = append(buf, `,"events":`...)
	buf = strconv.AppendInt(buf, int64(r.Events), 10)
	buf = append(buf, `,"code":`...)
	buf = appendGoavroJSONString(buf, r.Code)
	buf = append(buf, `,"message":`...)
	buf = appendGoavroJSONString(buf, r.Message)
	buf = append(buf, `,"duplicate":`...)
	buf = strconv.AppendBool(buf, r.Duplicate)
	return append(buf, '}'), true
}

// goavroEscapes maps the ASCII runes goavro escapes with a backslash to
// the letter after it.
var goavroEscapes = [utf8.RuneSelf]byte{'"': '"', '\\': '\\', '/': '/', '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't'}

// appendGoavroJSONString is goavro's stringTextualFromNative (v2.15.0):
// the escaping differs from encoding/json ('/' is escaped, non-ASCII and
// non-printable runes become \u escapes with upper-case hex).
func appendGoavroJSONString(buf []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	appendU := func(buf []byte, v uint16) []byte {
		return append(buf, '\\', 'u', hex[v>>12&0xF], hex[v>>8&0xF], hex[v>>4&0xF], hex[v&0xF])
	}
	buf = append(buf, '"')
	for _, r := range s {
		if r < utf8.RuneSelf {
			if e := goavroEscapes[r]; e != 0 {
				buf = append(buf, '\\', e)
				continue
			}
			if unicode.IsPrint(r) {
				buf = append(buf, byte(r))
				continue
			}
		}
		r1, r2 := utf16.EncodeRune(r)
		if r1 != unicode.ReplacementChar || r2 != unicode.ReplacementChar {
			buf = appendU(buf, uint16(r1))
			buf = appendU(buf, uint16(r2))
			continue
		}
		buf = appendU(buf, uint16(r))
	}
	return append(buf, '"')
}

// encodeEvent returns the event envelope in single-object encoding.
func (c *envelopeCodec) encodeEvent(e *wire.Event) []byte {
	buf := make([]byte, schemas.HeaderLen, 48+len(e.AggregateType)+len(e.AggregateID)+len(e.EventType)+len(e.CommandID)+len(e.Payload))
	copy(buf, c.eventHdr[:])
	buf = appendAvroString(buf, e.AggregateType)
	buf = appendAvroString(buf, e.AggregateID)
	buf = appendLong(buf, e.Version)
	buf = appendAvroString(buf, e.EventType)
	buf = appendAvroString(buf, e.CommandID)
	buf = appendLong(buf, e.TimestampMillis)
	return appendAvroBytes(buf, e.Payload)
}

// appendRecent appends one kcqrs.RecentCommand in Avro binary; false when
// the reply's status is not a symbol of the enum.
func appendRecent(buf []byte, rc *wire.RecentCommand) ([]byte, bool) {
	st, ok := statusIndex(rc.Reply.Status)
	if !ok {
		return buf, false
	}
	buf = appendAvroString(buf, rc.CommandID)
	buf = appendLong(buf, int64(st))
	buf = appendLong(buf, rc.Reply.Version)
	buf = appendLong(buf, int64(rc.Reply.Events))
	buf = appendAvroString(buf, rc.Reply.Code)
	return appendAvroString(buf, rc.Reply.Message), true
}

// encodeSnapshot returns the snapshot in single-object encoding, or false
// when a remembered reply has a status outside the enum.
func (c *envelopeCodec) encodeSnapshot(s *wire.Snapshot) ([]byte, bool) {
	items := make([][]byte, len(s.Recent))
	for i := range s.Recent {
		var ok bool
		if items[i], ok = appendRecent(nil, &s.Recent[i]); !ok {
			return nil, false
		}
	}
	return c.encodeSnapshotItems(s, items), true
}

// encodeSnapshotItems encodes s with its Recent array given as the encoded
// items (s.Recent itself is not read): a snapshot is written once per
// command, and re-encoding every remembered reply each time cost more than
// the rest of the snapshot (see aggState.recentEnc).
func (c *envelopeCodec) encodeSnapshotItems(s *wire.Snapshot, items [][]byte) []byte {
	size := 40 + len(s.AggregateType) + len(s.AggregateID) + len(s.State)
	for _, it := range items {
		size += len(it)
	}
	buf := make([]byte, schemas.HeaderLen, size)
	copy(buf, c.snapHdr[:])
	buf = appendAvroString(buf, s.AggregateType)
	buf = appendAvroString(buf, s.AggregateID)
	buf = appendLong(buf, s.Version)
	buf = appendAvroBytes(buf, s.State)
	if n := len(items); n > 0 {
		// goavro writes one block of every item, then the empty block.
		buf = appendLong(buf, int64(n))
		for _, it := range items {
			buf = append(buf, it...)
		}
	}
	return append(buf, 0)
}

var errSnapshotSchema = errors.New("snapshot written with another schema")

// envReader decodes Avro binary with the same rules as schemas.Codec.Decode
// (its pre-scan, then goavro): varints of at most 10 bytes, lengths within
// the data, enum indexes within the symbols, no bytes left over.
type envReader struct {
	buf []byte
	err error
}

func (d *envReader) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.buf = nil
}

func (d *envReader) uvarint() uint64 {
	var v uint64
	var shift uint
	for i := 0; i < len(d.buf) && i < 10; i++ {
		b := d.buf[i]
		v |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			d.buf = d.buf[i+1:]
			return v
		}
		shift += 7
	}
	if len(d.buf) >= 10 {
		d.fail(errors.New("varint longer than 10 bytes"))
	} else {
		d.fail(errors.New("unexpected end of data"))
	}
	return 0
}

func (d *envReader) long() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// int is goavro's int: the varint truncated to 32 bits.
func (d *envReader) int() int32 {
	u := d.uvarint()
	return int32(u>>1) ^ -int32(u&1)
}

func (d *envReader) bytes() []byte {
	n := d.long()
	if d.err != nil {
		return nil
	}
	if n < 0 || n > int64(len(d.buf)) {
		d.fail(fmt.Errorf("length %d with %d bytes left", n, len(d.buf)))
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

func (d *envReader) string() string { return string(d.bytes()) }

func (d *envReader) status() wire.Status {
	st := d.long()
	if d.err == nil && (st < 0 || st >= int64(len(statusSymbols))) {
		d.fail(fmt.Errorf("enum kcqrs.ReplyStatus: index %d out of range", st))
	}
	if d.err != nil {
		return ""
	}
	return statusSymbols[st]
}

func (d *envReader) recentReply(r *wire.RecentReply) {
	r.Status = d.status()
	r.Version = d.long()
	r.Events = d.int()
	r.Code = d.string()
	r.Message = d.string()
}

// decodeSnapshot decodes a single-object encoded kcqrs.Snapshot written with
// the current schema; errSnapshotSchema for any other writer schema (the
// caller then uses the generic codec). It also returns the encoded bytes of
// each Recent item. Nothing returned aliases data: it may be reused.
func (c *envelopeCodec) decodeSnapshot(data []byte) (wire.Snapshot, [][]byte, error) {
	var s wire.Snapshot
	fp, err := schemas.Fingerprint(data)
	if err != nil {
		return s, nil, err
	}
	if fp != c.snapFP {
		return s, nil, errSnapshotSchema
	}
	own := append([]byte(nil), data[schemas.HeaderLen:]...)
	d := &envReader{buf: own}
	offset := func() int { return len(own) - len(d.buf) }
	s.AggregateType = d.string()
	s.AggregateID = d.string()
	s.Version = d.long()
	s.State = d.bytes()
	var items [][]byte
	for d.err == nil {
		n := d.long()
		if d.err != nil || n == 0 {
			break
		}
		if n < 0 {
			if n == math.MinInt64 {
				d.fail(fmt.Errorf("array block count %d", n))
				break
			}
			n = -n
			if size := d.long(); d.err == nil && (size < 0 || size > int64(len(d.buf))) {
				d.fail(fmt.Errorf("array block size %d with %d bytes left", size, len(d.buf)))
			}
		}
		// Every item takes at least 6 bytes (one per string, number and
		// enum); a count beyond that is corrupt and must not size an
		// allocation.
		if d.err == nil && n > int64(len(d.buf)/6) {
			d.fail(fmt.Errorf("array block count %d with %d bytes left", n, len(d.buf)))
		}
		if d.err != nil {
			break
		}
		if s.Recent == nil {
			s.Recent = make([]wire.RecentCommand, 0, n)
			items = make([][]byte, 0, n)
		}
		for i := int64(0); i < n && d.err == nil; i++ {
			var rc wire.RecentCommand
			start := offset()
			rc.CommandID = d.string()
			d.recentReply(&rc.Reply)
			if d.err == nil {
				s.Recent = append(s.Recent, rc)
				end := offset()
				items = append(items, own[start:end:end])
			}
		}
	}
	if d.err == nil && len(d.buf) != 0 {
		d.fail(fmt.Errorf("%d bytes left after the record", len(d.buf)))
	}
	if d.err != nil {
		return wire.Snapshot{}, nil, fmt.Errorf("schemas: decode kcqrs.Snapshot: %w", d.err)
	}
	return s, items, nil
}

// decodeEvent decodes a single-object encoded kcqrs.Event written with the
// current schema; false for anything else, including data the generic codec
// would reject (the caller then decodes it that way, for the same result or
// the same error). The payload is a copy, as the generic codec makes it (nil
// when empty). names returns the registry's own string for a known
// aggregate or event type name (the same value, without an allocation per
// event); nil or a miss copies the bytes.
func (c *envelopeCodec) decodeEvent(data []byte, names map[string]string) (wire.Event, bool) {
	var e wire.Event
	if len(data) < schemas.HeaderLen || data[0] != 0xC3 || data[1] != 0x01 ||
		binary.LittleEndian.Uint64(data[2:schemas.HeaderLen]) != c.eventFP {
		return e, false
	}
	d := envReader{buf: data[schemas.HeaderLen:]}
	name := func() string {
		b := d.bytes()
		if n, ok := names[string(b)]; ok {
			return n
		}
		return string(b)
	}
	e.AggregateType = name()
	e.AggregateID = d.string()
	e.Version = d.long()
	e.EventType = name()
	e.CommandID = d.string()
	e.TimestampMillis = d.long()
	if p := d.bytes(); len(p) > 0 {
		e.Payload = append([]byte(nil), p...)
	}
	if d.err != nil || len(d.buf) != 0 {
		return wire.Event{}, false
	}
	return e, true
}

// rememberEncoded keeps recentEnc in step after an entry was appended to
// recent: it encodes the new entry, or forgets recentEnc when it was not
// in step (a snapshot decoded by the generic codec) or cannot be encoded.
func (a *aggState) rememberEncoded() {
	n := len(a.recent)
	if len(a.recentEnc) != n-1 || (a.recentEnc == nil && n > 1) {
		a.recentEnc = nil
		return
	}
	enc, ok := appendRecent(nil, &a.recent[n-1])
	if !ok {
		a.recentEnc = nil
		return
	}
	a.recentEnc = append(a.recentEnc, enc)
}
