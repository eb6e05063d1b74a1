package schemas

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/linkedin/goavro/v2"
)

// HeaderLen is the length of the single-object header: the two marker bytes
// 0xC3 0x01 and the 8-byte little-endian fingerprint of the writer's schema.
const HeaderLen = 10

// ErrNotSingleObject is returned for data that does not start with an Avro
// single-object header.
var ErrNotSingleObject = errors.New("schemas: not Avro single-object encoded (no 0xC3 0x01 header)")

// FingerprintError is returned by Decode when the data was written with a
// schema other than the codec's: Got is the fingerprint in the data, Want the
// codec's. Use Set.ByFingerprint(Got) to find the writer's schema.
type FingerprintError struct {
	Got, Want uint64
}

func (e *FingerprintError) Error() string {
	return fmt.Sprintf("schemas: data written with schema fingerprint %#016x, decoder expects %#016x", e.Got, e.Want)
}

// Fingerprint returns the schema fingerprint in the single-object header of
// data, or ErrNotSingleObject.
func Fingerprint(data []byte) (uint64, error) {
	if len(data) < HeaderLen || data[0] != 0xC3 || data[1] != 0x01 {
		return 0, ErrNotSingleObject
	}
	return binary.LittleEndian.Uint64(data[2:HeaderLen]), nil
}

func singleObjectHeader(fp uint64) (h [HeaderLen]byte) {
	h[0], h[1] = 0xC3, 0x01
	binary.LittleEndian.PutUint64(h[2:], fp)
	return h
}

// Codec encodes and decodes one top-level record schema. It is safe for
// concurrent use.
type Codec struct {
	name   string
	short  string
	file   string // path of the .avsc file, for messages
	source string // the .avsc file's text
	avro   *goavro.Codec
	schema *avroType
	pcf    string // Parsing Canonical Form
	fp     uint64 // CRC-64-AVRO of pcf
	header [HeaderLen]byte
	// defs holds the canonical form, with defaults, of every named type the
	// file defines, so a Set can check that a type defined in two files is
	// the same in both.
	defs map[string]string

	// version is the schema version (see HistoryDir); older holds, for a
	// current record, the codecs of its older versions by fingerprint, so
	// Decode can resolve their data.
	version int
	older   map[uint64]*Codec

	plans     sync.Map // reflect.Type → *plan
	resolvers sync.Map // writer *Codec → *cachedResolver
	// sizeHint is the length of the latest compiled encoding, the capacity
	// Encode starts its buffer with.
	sizeHint atomic.Int32
}

// plan is everything worked out once for one Go struct type: the converter
// to and from goavro's native form (JSON, resolution of older data), and the
// compiled codec of the binary form (nil where the compiler gives up).
type plan struct {
	conv *converter
	fast *compiled
	err  error
}

// Name returns the record's full name, like "kcqrs.Reply".
func (c *Codec) Name() string { return c.name }

// ShortName returns the record's name without its namespace, like "Reply".
func (c *Codec) ShortName() string { return c.short }

// Fingerprint returns the CRC-64-AVRO (Rabin) fingerprint of the schema's
// Parsing Canonical Form: the value in the header of every encoded record.
// It equals goavro's Codec.Rabin except where goavro's canonical form departs
// from the specification (see Load).
func (c *Codec) Fingerprint() uint64 { return c.fp }

// Schema returns the schema's Parsing Canonical Form (no docs, no defaults),
// the text the fingerprint is computed from.
func (c *Codec) Schema() string { return c.pcf }

// Source returns the schema as written in its .avsc file, with docs and
// defaults: the form to register with a schema registry.
func (c *Codec) Source() string { return c.source }

// Avro returns the underlying goavro codec, for callers that work with
// goavro's native form directly. Do not give it untrusted binary data: goavro
// allocates as many slots as an array's block count claims, so five hostile
// bytes end the process with a fatal out-of-memory error. Decode pre-scans
// the data to prevent that.
func (c *Codec) Avro() *goavro.Codec { return c.avro }

func (c *Codec) String() string { return c.name }

// Bind checks that Go struct type t maps onto the record: every Avro field has
// a Go field of a compatible kind, and every exported Go field has an Avro
// field. It reports every mismatch at once (errors.Join). Call it once at
// start for each type the program encodes or decodes; Encode and Decode
// reuse the result. A pointer-to-struct type is taken as its struct type.
func (c *Codec) Bind(t reflect.Type) error {
	if t == nil {
		return fmt.Errorf("schemas: %s: Bind of a nil type", c.name)
	}
	_, err := c.plan(t)
	return err
}

func (c *Codec) plan(t reflect.Type) (*converter, error) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	p := c.planOf(t)
	return p.conv, p.err
}

// planOf returns the plan of struct type t, building it on first use.
func (c *Codec) planOf(t reflect.Type) *plan {
	if p, ok := c.plans.Load(t); ok {
		return p.(*plan)
	}
	conv, err := bindType(c.schema, t)
	np := &plan{conv: conv, err: err}
	if err == nil {
		np.fast = compile(c.schema, t)
	}
	p, _ := c.plans.LoadOrStore(t, np)
	return p.(*plan)
}

// ToNative converts v (a struct or a pointer to one) to goavro's native form
// of the record, a map[string]any.
func (c *Codec) ToNative(v any) (any, error) {
	rv, err := c.structValue(v)
	if err != nil {
		return nil, err
	}
	conv, err := c.plan(rv.Type())
	if err != nil {
		return nil, err
	}
	n, err := conv.enc(rv)
	if err != nil {
		return nil, fmt.Errorf("schemas: encode %s: %w", c.name, err)
	}
	return n, nil
}

// FromNative sets *ptr from goavro's native form of the record. It checks
// every native value's type and never panics.
func (c *Codec) FromNative(native any, ptr any) error {
	rv, err := c.target(ptr)
	if err != nil {
		return err
	}
	return c.fromNative(native, rv)
}

func (c *Codec) fromNative(native any, rv reflect.Value) error {
	conv, err := c.plan(rv.Type())
	if err != nil {
		return err
	}
	// Decode into a copy, so that *ptr is left as it was on error.
	tmp := reflect.New(rv.Type()).Elem()
	tmp.Set(rv)
	if err := conv.dec(native, tmp); err != nil {
		return fmt.Errorf("schemas: decode %s: %w", c.name, err)
	}
	rv.Set(tmp)
	return nil
}

func (c *Codec) structValue(v any) (reflect.Value, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return reflect.Value{}, fmt.Errorf("schemas: encode %s: nil %T", c.name, v)
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return reflect.Value{}, fmt.Errorf("schemas: encode %s: %T is not a struct", c.name, v)
	}
	return rv, nil
}

func (c *Codec) target(ptr any) (reflect.Value, error) {
	rv := reflect.ValueOf(ptr)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, fmt.Errorf("schemas: decode %s: need a non-nil pointer to a struct, got %T", c.name, ptr)
	}
	return rv.Elem(), nil
}

// Encode returns v (a struct or a pointer to one) in Avro single-object
// encoding: 0xC3 0x01, the schema's fingerprint (8 bytes, little-endian),
// then the record in Avro binary encoding.
func (c *Codec) Encode(v any) ([]byte, error) {
	if out, ok, err := c.fastEncode(v); ok {
		return out, err
	}
	return c.encodeGeneric(v)
}

// fastEncode encodes v with its compiled plan; ok is false when there is
// none (or v is something Encode must refuse), and then the goavro path
// decides.
func (c *Codec) fastEncode(v any) (out []byte, ok bool, err error) {
	pl, p := c.fastPlan(v)
	if pl == nil {
		return nil, false, nil
	}
	out, err = pl.fast.root.enc(c.newBuffer(), p)
	runtime.KeepAlive(v)
	if err != nil {
		return nil, true, fmt.Errorf("schemas: encode %s: %w", c.name, err)
	}
	c.noteSize(out)
	return out, true, nil
}

// fastPlan returns v's compiled plan and the address of its struct, or nil
// when v is not a struct (or pointer to one) with a compiled plan.
func (c *Codec) fastPlan(v any) (*plan, unsafe.Pointer) {
	t := reflect.TypeOf(v)
	if t == nil {
		return nil, nil
	}
	isPtr := t.Kind() == reflect.Pointer
	if isPtr {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil, nil
	}
	pl := c.planOf(t)
	if pl.err != nil || pl.fast == nil {
		return nil, nil
	}
	// The interface's data word is the pointer, or points at the boxed
	// struct (which is never written to), except for a struct that is
	// itself pointer-shaped: that rare case takes the goavro path.
	p := efaceData(v)
	if p == nil || (!isPtr && pl.fast.direct) {
		return nil, nil
	}
	return pl, p
}

// newBuffer is an output buffer holding the header, sized from the last
// encodings.
func (c *Codec) newBuffer() []byte {
	buf := make([]byte, HeaderLen, max(64, int(c.sizeHint.Load())))
	copy(buf, c.header[:])
	return buf
}

// noteSize remembers the size of an encoding for the next buffers.
func (c *Codec) noteSize(out []byte) {
	if n := len(out); n <= 1<<16 && int32(n) != c.sizeHint.Load() {
		c.sizeHint.Store(int32(n))
	}
}

// EncodeSealed is Encode with every top-level field marked PersonalProperty
// written as seal returns it for the field's value (a nil pointer field
// stays null and is not passed to seal); v itself is not changed, and its
// personal values reach nothing but seal. It saves copying v to seal it.
// ok is false when v's type has no compiled plan (nothing was encoded: seal
// a copy and Encode it instead).
func (c *Codec) EncodeSealed(v any, seal func(plain string) (string, error)) (out []byte, ok bool, err error) {
	pl, p := c.fastPlan(v)
	if pl == nil || pl.fast.top == nil {
		return nil, false, nil
	}
	out = c.newBuffer()
	for i := range pl.fast.top {
		f := &pl.fast.top[i]
		fp := unsafe.Add(p, f.off)
		switch {
		case !f.personal:
			out, err = f.n.enc(out, fp)
		case f.ptr:
			sp := *(**string)(fp)
			if sp == nil {
				out, err = f.n.enc(out, fp)
				break
			}
			var sealed string
			if sealed, err = seal(*sp); err != nil {
				break
			}
			ps := &sealed
			out, err = f.n.enc(out, unsafe.Pointer(&ps))
		case f.str:
			// Appended here (encString's bytes): the sealed value then
			// needs no addressable copy on the heap.
			var sealed string
			if sealed, err = seal(*(*string)(fp)); err == nil {
				out = append(binary.AppendVarint(out, int64(len(sealed))), sealed...)
			}
		default:
			var sealed string
			if sealed, err = seal(*(*string)(fp)); err != nil {
				break
			}
			out, err = f.n.enc(out, unsafe.Pointer(&sealed))
		}
		if err != nil {
			return nil, true, fmt.Errorf("schemas: encode %s: %w", c.name, prefixErr(f.name, err))
		}
	}
	runtime.KeepAlive(v)
	c.noteSize(out)
	return out, true, nil
}

// encodeGeneric is Encode through goavro's native form: the path of the Go
// types the compiler does not handle, and the oracle of the tests.
func (c *Codec) encodeGeneric(v any) ([]byte, error) {
	n, err := c.ToNative(v)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, HeaderLen, 128)
	copy(buf, c.header[:])
	out, err := c.avro.BinaryFromNative(buf, n)
	if err != nil {
		return nil, fmt.Errorf("schemas: encode %s: %w", c.name, err)
	}
	return out, nil
}

// Decode sets *ptr from single-object encoded data. Data written with an
// older version of the record (a file in history/, see HistoryDir) is read
// by the Avro specification's schema resolution; data written with any other
// schema gives a *FingerprintError, and old data the current schema cannot
// resolve a *ResolveError; data without a header gives ErrNotSingleObject;
// truncated or malformed data, or bytes left over after the record, give an
// error. Decode copies what it keeps: data may be reused afterwards. On error
// *ptr is unchanged.
func (c *Codec) Decode(data []byte, ptr any) (err error) {
	if ok, err := c.fastDecode(data, ptr); ok {
		return err
	}
	return c.decodeGeneric(data, ptr)
}

// fastDecode decodes data written with exactly this codec's schema into
// *ptr with the compiled plan of its type; ok is false when there is none,
// or data has no header or another fingerprint (an older version to
// resolve, or an error to report): the goavro path decides those.
func (c *Codec) fastDecode(data []byte, ptr any) (ok bool, err error) {
	t := reflect.TypeOf(ptr)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return false, nil
	}
	p := efaceData(ptr)
	if p == nil {
		return false, nil
	}
	if fp, err := Fingerprint(data); err != nil || fp != c.fp {
		return false, nil
	}
	t = t.Elem()
	pl := c.planOf(t)
	if pl.err != nil || pl.fast == nil {
		return false, nil
	}
	body := data[HeaderLen:]
	// The pre-scan decides, as on the goavro path, whether the data is one
	// well-formed record; after it only a Go integer narrower than the Avro
	// int can still fail, and plans with one (fallible) decode into a copy,
	// so *ptr is unchanged on every error.
	if err := scanBinary(c.schema, body); err != nil {
		return true, fmt.Errorf("schemas: decode %s: %w", c.name, err)
	}
	var rest []byte
	if !pl.fast.fallible {
		rest, err = pl.fast.root.dec(body, p)
	} else {
		tmp := reflect.New(t)
		tmp.Elem().Set(reflect.NewAt(t, p).Elem())
		if rest, err = pl.fast.root.dec(body, tmp.UnsafePointer()); err == nil && len(rest) == 0 {
			reflect.NewAt(t, p).Elem().Set(tmp.Elem())
		}
	}
	runtime.KeepAlive(ptr)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d bytes left after the record", len(rest))
	}
	if err != nil {
		return true, fmt.Errorf("schemas: decode %s: %w", c.name, err)
	}
	return true, nil
}

// decodeGeneric is Decode through goavro's native form (and resolution of
// older versions): the path of everything fastDecode leaves, and the oracle
// of the tests.
func (c *Codec) decodeGeneric(data []byte, ptr any) (err error) {
	rv, err := c.target(ptr)
	if err != nil {
		return err
	}
	fp, err := Fingerprint(data)
	if err != nil {
		return err
	}
	w := c
	if fp != c.fp {
		if w = c.older[fp]; w == nil {
			return &FingerprintError{Got: fp, Want: c.fp}
		}
	}
	native, err := w.DecodeNative(data)
	if err != nil {
		return err
	}
	if native, err = c.Resolve(w, native); err != nil {
		return err
	}
	return c.fromNative(native, rv)
}

// DecodeNative returns single-object encoded data written with exactly this
// codec's schema in goavro's native form (a map[string]any), pre-scanned so
// hostile bytes give an error, never a crash.
func (c *Codec) DecodeNative(data []byte) (native any, err error) {
	fp, err := Fingerprint(data)
	if err != nil {
		return nil, err
	}
	if fp != c.fp {
		return nil, &FingerprintError{Got: fp, Want: c.fp}
	}
	body := data[HeaderLen:]
	if err := scanBinary(c.schema, body); err != nil {
		return nil, fmt.Errorf("schemas: decode %s: %w", c.name, err)
	}
	defer recoverGoavro(c.name, &err)
	native, rest, err := c.avro.NativeFromBinary(body)
	if err != nil {
		return nil, fmt.Errorf("schemas: decode %s: %w", c.name, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("schemas: decode %s: %d bytes left after the record", c.name, len(rest))
	}
	return native, nil
}

// EncodeJSON returns v in the Avro JSON encoding of the record, with fields in
// schema order. For records without unions and bytes this is plain JSON;
// a union value is wrapped as {"type name": value}, bytes are a string of
// code points U+0000 to U+00FF.
func (c *Codec) EncodeJSON(v any) ([]byte, error) {
	n, err := c.ToNative(v)
	if err != nil {
		return nil, err
	}
	raw, err := c.avro.TextualFromNative(nil, n)
	if err != nil {
		return nil, fmt.Errorf("schemas: encode %s as JSON: %w", c.name, err)
	}
	if ordered, err := orderJSON(make([]byte, 0, len(raw)), c.schema, raw); err == nil {
		return ordered, nil
	}
	return raw, nil // still valid Avro JSON (say, a NaN goavro wrote as null), just not ordered
}

// DecodeJSON sets *ptr from the Avro JSON encoding of the record, validating
// it against the schema: a missing field without a default, an unknown field
// or a value of the wrong type is an error. On error *ptr is unchanged.
func (c *Codec) DecodeJSON(data []byte, ptr any) (err error) {
	rv, err := c.target(ptr)
	if err != nil {
		return err
	}
	data = bytes.Trim(data, jsonSpace)
	if err := checkJSONFields(c.schema, data); err != nil {
		return fmt.Errorf("schemas: decode %s from JSON: %w", c.name, err)
	}
	defer recoverGoavro(c.name, &err)
	native, rest, err := c.avro.NativeFromTextual(data)
	if err != nil {
		return fmt.Errorf("schemas: decode %s from JSON: %w", c.name, err)
	}
	if len(bytes.Trim(rest, jsonSpace)) != 0 {
		return fmt.Errorf("schemas: decode %s from JSON: data left after the record", c.name)
	}
	return c.fromNative(native, rv)
}

// jsonSpace is JSON's whitespace (RFC 8259); bytes.TrimSpace would also
// take Unicode's (U+00A0, U+0085, \v, \f) around the record.
const jsonSpace = " \t\r\n"

// recoverGoavro turns a panic inside goavro into an error. None is known (the
// fuzz tests look for them); this is defence in depth for a processor that
// must not die on one bad record.
func recoverGoavro(name string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("schemas: decode %s: panic: %v", name, r)
	}
}
