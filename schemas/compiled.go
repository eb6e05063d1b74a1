package schemas

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/linkedin/goavro/v2"
)

// This file compiles a (record schema, Go struct type) pair into a tree of
// encode and decode functions that work on the Go value's memory directly:
// Encode appends Avro binary to a buffer and Decode reads Avro binary into a
// struct, with no goavro native form (map[string]any, []any, boxed numbers)
// in between. The goavro path (reflect.go's converters, then goavro) stays for
// JSON, for data written with an older schema (resolution), and as the oracle
// of the tests: compiled_test.go checks byte-for-byte equality with goavro's
// BinaryFromNative on random values of every record, and the fuzz target
// FuzzCompiledDecode that both decoders agree on arbitrary bytes.
//
// A plan is compiled only after bindType accepted the pair, so the mapping
// (field matching, kinds) has been checked and reported already; the
// compiler follows the same rules (matchFields) and gives up, leaving the
// goavro path in charge, on anything it does not know.
//
// Memory is addressed with unsafe.Pointer and offsets taken from the
// reflect.Type the plan was built for; a plan is only ever applied to a
// pointer whose dynamic type is that struct type (Codec.fastEncode and
// fastDecode check it), so every access is in bounds and typed as the Go
// field it reads or writes. Every write goes through a typed Go pointer or
// through reflect (slices, maps and pointers are created with reflect), so
// the garbage collector's write barriers see every pointer written.

// encFn appends the Avro binary form of the value at p to buf.
type encFn func(buf []byte, p unsafe.Pointer) ([]byte, error)

// decFn reads one value from buf into the value at p, overwriting it, and
// returns the bytes after it.
type decFn func(buf []byte, p unsafe.Pointer) ([]byte, error)

// node is the compiled form of one (Avro type, Go type) pair. Containers call
// their children through the node, so a recursive schema compiles to a
// cyclic graph.
type node struct {
	enc encFn
	dec decFn
}

// compiled is the plan of one top-level record type.
type compiled struct {
	root *node
	typ  reflect.Type // the struct type
	// direct is set when an interface holding a typ stores it in its data
	// word (a struct with a single pointer-shaped field): Encode must then
	// not read through the data word.
	direct bool
	// fallible is set when decoding can fail after scanBinary accepted the
	// data (an Avro int into a Go int8 or int16 that overflows): Decode then
	// decodes into a copy so that the target is unchanged on error.
	fallible bool
	// top is the top-level record's fields, for EncodeSealed.
	top []compiledField
}

type compiler struct {
	cache    map[convKey]*node
	fallible bool
	failed   bool
	// root is the top-level record, whose fields buildRecord keeps in
	// rootFields.
	root       *avroType
	rootFields []compiledField
}

// compile returns the plan of record r for struct type t, or nil when some
// part of the mapping is not compiled (the goavro path then serves t).
func compile(r *avroType, t reflect.Type) *compiled {
	c := &compiler{cache: map[convKey]*node{}, root: r}
	root := c.build(r, t)
	if c.failed {
		return nil
	}
	return &compiled{root: root, typ: t, direct: isDirectIface(t), fallible: c.fallible, top: c.rootFields}
}

// isDirectIface reports whether an interface value holding a t keeps it in
// its data word instead of pointing at a copy. The zero value of such a type
// is a nil pointer word; a boxed zero value of any other type is a non-nil
// pointer to zeroed memory.
func isDirectIface(t reflect.Type) bool {
	v := reflect.New(t).Elem().Interface()
	return efaceData(v) == nil
}

type eface struct {
	typ, data unsafe.Pointer
}

func efaceData(v any) unsafe.Pointer { return (*eface)(unsafe.Pointer(&v)).data }

type sliceHeader struct {
	data     unsafe.Pointer
	len, cap int
}

func (c *compiler) build(a *avroType, t reflect.Type) *node {
	key := convKey{a, t}
	if n, ok := c.cache[key]; ok {
		return n
	}
	n := &node{}
	c.cache[key] = n
	if a.logical != "" && goavroLogical[a.kind.String()+"."+a.logical] {
		c.failed = true
		return n
	}
	switch a.kind {
	case kindBoolean:
		n.enc, n.dec = encBool, decBool
	case kindInt:
		c.buildInt(n, t, true)
	case kindLong:
		c.buildInt(n, t, false)
	case kindFloat:
		switch t.Kind() {
		case reflect.Float32:
			n.enc, n.dec = encFloat32, decFloat32
		case reflect.Float64:
			n.enc, n.dec = encFloat64AsFloat, decFloatAsFloat64
		default:
			c.failed = true
		}
	case kindDouble:
		if t.Kind() != reflect.Float64 {
			c.failed = true
			break
		}
		n.enc, n.dec = encDouble, decDouble
	case kindString:
		if t.Kind() != reflect.String {
			c.failed = true
			break
		}
		n.enc, n.dec = encString, decString
	case kindEnum:
		if t.Kind() != reflect.String {
			c.failed = true
			break
		}
		n.enc, n.dec = enumFuncs(a)
	case kindBytes:
		if !isByteSlice(t) {
			c.failed = true
			break
		}
		n.enc, n.dec = encBytes, decBytes
	case kindFixed:
		c.buildFixed(n, a, t)
	case kindArray:
		c.buildArray(n, a, t)
	case kindMap:
		c.buildMap(n, a, t)
	case kindUnion:
		c.buildOptional(n, a, t)
	case kindRecord:
		c.buildRecord(n, a, t)
	default:
		c.failed = true
	}
	return n
}

func (c *compiler) buildInt(n *node, t reflect.Type, avroInt bool) {
	k := t.Kind()
	switch {
	case k == reflect.Int64 || (k == reflect.Int && unsafe.Sizeof(int(0)) == 8):
		if avroInt {
			n.enc, n.dec = encInt64AsInt, decIntToInt64
		} else {
			n.enc, n.dec = encLong, decLong
		}
	case avroInt && k == reflect.Int32:
		n.enc, n.dec = encInt32, decInt32
	case avroInt && k == reflect.Int16:
		c.fallible = true
		n.enc = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
			return binary.AppendVarint(buf, int64(*(*int16)(p))), nil
		}
		n.dec = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
			x, rest, err := readInt(buf)
			if err != nil {
				return nil, err
			}
			if int32(int16(x)) != x {
				return nil, fmt.Errorf("%d overflows Go %s", x, t)
			}
			*(*int16)(p) = int16(x)
			return rest, nil
		}
	case avroInt && k == reflect.Int8:
		c.fallible = true
		n.enc = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
			return binary.AppendVarint(buf, int64(*(*int8)(p))), nil
		}
		n.dec = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
			x, rest, err := readInt(buf)
			if err != nil {
				return nil, err
			}
			if int32(int8(x)) != x {
				return nil, fmt.Errorf("%d overflows Go %s", x, t)
			}
			*(*int8)(p) = int8(x)
			return rest, nil
		}
	default:
		c.failed = true
	}
}

func (c *compiler) buildFixed(n *node, a *avroType, t reflect.Type) {
	size := a.size
	switch {
	case isByteSlice(t):
		n.enc = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
			b := *(*[]byte)(p)
			if len(b) != size {
				return nil, fmt.Errorf("%d bytes for Avro %s of size %d", len(b), a.describe(), size)
			}
			return append(buf, b...), nil
		}
		n.dec = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
			b, rest, err := readN(buf, size)
			if err != nil {
				return nil, err
			}
			if size == 0 {
				*(*[]byte)(p) = nil
			} else {
				*(*[]byte)(p) = append([]byte(nil), b...)
			}
			return rest, nil
		}
	case t.Kind() == reflect.Array && t.Elem().Kind() == reflect.Uint8 && t.Len() == size:
		n.enc = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
			return append(buf, unsafe.Slice((*byte)(p), size)...), nil
		}
		n.dec = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
			b, rest, err := readN(buf, size)
			if err != nil {
				return nil, err
			}
			copy(unsafe.Slice((*byte)(p), size), b)
			return rest, nil
		}
	default:
		c.failed = true
	}
}

func (c *compiler) buildArray(n *node, a *avroType, t reflect.Type) {
	if t.Kind() != reflect.Slice || isByteSlice(t) {
		c.failed = true
		return
	}
	et := t.Elem()
	item := c.build(a.items, et)
	size := et.Size()
	n.enc = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
		h := (*sliceHeader)(p)
		if h.len == 0 {
			return append(buf, 0), nil
		}
		var err error
		left := int64(0) // in the current block
		for i := 0; i < h.len; i++ {
			if left == 0 {
				left = blockLen(int64(h.len - i))
				buf = binary.AppendVarint(buf, left)
			}
			if buf, err = item.enc(buf, unsafe.Add(h.data, uintptr(i)*size)); err != nil {
				return nil, prefixErr(indexSeg(i), err)
			}
			left--
		}
		return append(buf, 0), nil
	}
	minSize := a.items.minSize
	n.dec = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
		// The slice is built in place: Grow on the zeroed target allocates
		// the backing array and nothing else.
		v := reflect.NewAt(t, p).Elem()
		v.SetZero()
		total := 0
		for {
			count, rest, err := readBlockCount(buf, minSize, "array")
			if err != nil {
				return nil, err
			}
			buf = rest
			if count == 0 {
				return buf, nil
			}
			v.Grow(count)
			v.SetLen(total + count)
			base := v.UnsafePointer()
			for i := total; i < total+count; i++ {
				if buf, err = item.dec(buf, unsafe.Add(base, uintptr(i)*size)); err != nil {
					return nil, prefixErr(indexSeg(i), err)
				}
			}
			total += count
		}
	}
}

func (c *compiler) buildMap(n *node, a *avroType, t reflect.Type) {
	if t.Kind() != reflect.Map || t.Key().Kind() != reflect.String {
		c.failed = true
		return
	}
	et := t.Elem()
	val := c.build(a.values, et)
	n.enc = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
		m := reflect.NewAt(t, p).Elem()
		if m.Len() == 0 {
			return append(buf, 0), nil
		}
		// Map values are not addressable: each is copied into tmp to encode.
		tmp := reflect.New(et)
		it := m.MapRange()
		var err error
		left, done := int64(0), 0 // items left in the current block, items written
		for it.Next() {
			if left == 0 {
				left = blockLen(int64(m.Len() - done))
				buf = binary.AppendVarint(buf, left)
			}
			left--
			done++
			k := it.Key().String()
			buf = binary.AppendVarint(buf, int64(len(k)))
			buf = append(buf, k...)
			tmp.Elem().Set(it.Value())
			if buf, err = val.enc(buf, tmp.UnsafePointer()); err != nil {
				return nil, prefixErr("["+fmt.Sprintf("%q", k)+"]", err)
			}
		}
		return append(buf, 0), nil
	}
	minSize := 1 + a.values.minSize
	n.dec = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
		var m reflect.Value
		for {
			count, rest, err := readBlockCount(buf, minSize, "map")
			if err != nil {
				return nil, err
			}
			buf = rest
			if count == 0 {
				break
			}
			if !m.IsValid() {
				m = reflect.MakeMapWithSize(t, count)
			}
			for range count {
				var k string
				if k, buf, err = readString(buf); err != nil {
					return nil, fmt.Errorf("map key: %w", err)
				}
				ev := reflect.New(et)
				if buf, err = val.dec(buf, ev.UnsafePointer()); err != nil {
					return nil, prefixErr("["+fmt.Sprintf("%q", k)+"]", err)
				}
				m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), ev.Elem())
			}
		}
		v := reflect.NewAt(t, p).Elem()
		if !m.IsValid() {
			v.SetZero()
		} else {
			v.Set(m)
		}
		return buf, nil
	}
}

// buildOptional compiles a ["null", T] or [T, "null"] union onto a *T, and
// any other union onto a struct of one pointer per branch (union.go).
func (c *compiler) buildOptional(n *node, a *avroType, t reflect.Type) {
	other := optionalBranch(a)
	if other == nil && t.Kind() == reflect.Struct {
		c.buildUnion(n, a, t)
		return
	}
	if other == nil || t.Kind() != reflect.Pointer {
		c.failed = true
		return
	}
	nullIdx, otherIdx := int64(0), int64(1)
	if a.branches[1].kind == kindNull {
		nullIdx, otherIdx = 1, 0
	}
	et := t.Elem()
	elem := c.build(other, et)
	n.enc = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
		ptr := *(*unsafe.Pointer)(p)
		if ptr == nil {
			return binary.AppendVarint(buf, nullIdx), nil
		}
		return elem.enc(binary.AppendVarint(buf, otherIdx), ptr)
	}
	n.dec = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
		i, buf, err := readLongFast(buf)
		if err != nil {
			return nil, err
		}
		switch i {
		case nullIdx:
			reflect.NewAt(t, p).Elem().SetZero()
			return buf, nil
		case otherIdx:
		default:
			return nil, fmt.Errorf("union branch %d out of range", i)
		}
		ev := reflect.New(et)
		if buf, err = elem.dec(buf, ev.UnsafePointer()); err != nil {
			return nil, err
		}
		reflect.NewAt(t, p).Elem().Set(ev)
		return buf, nil
	}
}

type compiledField struct {
	name string
	off  uintptr
	n    *node
	// personal is a field marked PersonalProperty (top level only; a
	// string kind, or a pointer to one when ptr); str is one whose Avro
	// type is a plain string.
	personal, ptr, str bool
}

func (c *compiler) buildRecord(n *node, a *avroType, t reflect.Type) {
	if t.Kind() != reflect.Struct {
		c.failed = true
		return
	}
	b := &convBuilder{root: a.name, cache: map[convKey]*converter{}}
	goField := b.matchFields("", a, t)
	if len(b.errs) > 0 {
		c.failed = true
		return
	}
	fields := make([]compiledField, len(a.fields))
	for j, f := range a.fields {
		gi := goField[j]
		if gi < 0 {
			c.failed = true
			return
		}
		sf := t.Field(gi)
		fields[j] = compiledField{name: f.name, off: sf.Offset, n: c.build(f.typ, sf.Type)}
		if f.personal && a == c.root {
			switch {
			case sf.Type.Kind() == reflect.String:
				fields[j].personal = true
				fields[j].str = f.typ.kind == kindString && f.typ.logical == ""
			case sf.Type.Kind() == reflect.Pointer && sf.Type.Elem().Kind() == reflect.String:
				fields[j].personal, fields[j].ptr = true, true
			default:
				// PersonalGoFields refuses it; EncodeSealed must not
				// write it in clear.
				c.failed = true
				return
			}
		}
	}
	if a == c.root && c.rootFields == nil {
		c.rootFields = fields
	}
	n.enc = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
		var err error
		for i := range fields {
			f := &fields[i]
			if buf, err = f.n.enc(buf, unsafe.Add(p, f.off)); err != nil {
				return nil, prefixErr(f.name, err)
			}
		}
		return buf, nil
	}
	n.dec = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
		var err error
		for i := range fields {
			f := &fields[i]
			if buf, err = f.n.dec(buf, unsafe.Add(p, f.off)); err != nil {
				return nil, prefixErr(f.name, err)
			}
		}
		return buf, nil
	}
}

// blockLen is the count of the next block of an array or map with n items
// left: all of them, up to goavro's MaxBlockCount, as goavro splits them.
func blockLen(n int64) int64 {
	if limit := goavro.MaxBlockCount; limit > 0 && n > limit {
		return limit
	}
	return n
}

func indexSeg(i int) string { return fmt.Sprintf("[%d]", i) }
