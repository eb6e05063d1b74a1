package schemas

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// This file maps Go values onto goavro's native form and back, driven by the
// schema. The mapping for one (schema, Go type) pair is worked out once, by
// buildConverter, into a tree of small encode/decode functions, and cached on
// the Codec; encoding then walks that tree without inspecting struct tags
// again.
//
// goavro's native form:
//
//	record        map[string]any, one key per field
//	enum, string  string
//	int, long     int32, int64 (decoding); any Go integer (encoding)
//	float, double float32, float64
//	bytes, fixed  []byte; decoded bytes alias the input, so they are copied here
//	array         []any
//	map           map[string]any
//	union         nil, or map[string]any{branch: value}, where branch is the
//	              full name of a named type or the name of any other type
//	              ("string", "long", "array", ...)

// converter converts between one Go type and the native form of one Avro type.
type converter struct {
	enc func(v reflect.Value) (any, error)
	// dec sets v (settable) from native n. It must not panic, whatever n is.
	dec func(n any, v reflect.Value) error
}

type convKey struct {
	avro *avroType
	goT  reflect.Type
}

// convBuilder builds the converters for one top-level Go type and collects
// every mismatch on the way, so Bind can report them all at once.
type convBuilder struct {
	root  string // "kcqrs.Reply ↔ wire.Reply", for error messages
	cache map[convKey]*converter
	errs  []error
}

func (b *convBuilder) fail(path, format string, args ...any) {
	if path == "" {
		path = "(top level)"
	}
	b.errs = append(b.errs, fmt.Errorf("schemas: %s: %s: %s", b.root, path, fmt.Sprintf(format, args...)))
}

// bindType builds the converter of Go struct type t for record r, or returns
// every mismatch joined.
func bindType(r *avroType, t reflect.Type) (*converter, error) {
	b := &convBuilder{
		root:  r.name + " ↔ " + t.String(),
		cache: map[convKey]*converter{},
	}
	if t.Kind() != reflect.Struct {
		b.fail("", "Go type %s is not a struct", t)
		return nil, errors.Join(b.errs...)
	}
	c := b.build("", r, t)
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	return c, nil
}

func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func (b *convBuilder) build(path string, a *avroType, t reflect.Type) *converter {
	key := convKey{a, t}
	if c, ok := b.cache[key]; ok {
		return c // also ends the recursion of recursive types
	}
	c := &converter{}
	b.cache[key] = c
	mismatch := func() *converter {
		b.fail(path, "Go type %s does not fit Avro %s", t, a.describe())
		return c
	}
	if a.logical != "" && goavroLogical[a.kind.String()+"."+a.logical] {
		b.fail(path, "Avro %s is not supported by the Go mapping", a.describe())
		return c
	}

	switch a.kind {
	case kindBoolean:
		if t.Kind() != reflect.Bool {
			return mismatch()
		}
		c.enc = func(v reflect.Value) (any, error) { return v.Bool(), nil }
		c.dec = func(n any, v reflect.Value) error {
			x, ok := n.(bool)
			if !ok {
				return nativeErr(n, "boolean")
			}
			v.SetBool(x)
			return nil
		}
	case kindInt:
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		default:
			return mismatch()
		}
		c.enc = func(v reflect.Value) (any, error) {
			x := v.Int()
			if x < math.MinInt32 || x > math.MaxInt32 {
				return nil, fmt.Errorf("%d does not fit Avro int", x)
			}
			return int32(x), nil
		}
		c.dec = decInt
	case kindLong:
		switch t.Kind() {
		case reflect.Int64:
		case reflect.Int:
			if strconv.IntSize != 64 {
				return mismatch()
			}
		default:
			return mismatch()
		}
		c.enc = func(v reflect.Value) (any, error) { return v.Int(), nil }
		c.dec = decInt
	case kindFloat:
		if t.Kind() != reflect.Float32 && t.Kind() != reflect.Float64 {
			return mismatch()
		}
		c.enc = func(v reflect.Value) (any, error) { return float32(v.Float()), nil }
		c.dec = decFloat
	case kindDouble:
		if t.Kind() != reflect.Float64 {
			return mismatch()
		}
		c.enc = func(v reflect.Value) (any, error) { return v.Float(), nil }
		c.dec = decFloat
	case kindString, kindEnum:
		if t.Kind() != reflect.String {
			return mismatch()
		}
		c.enc = func(v reflect.Value) (any, error) { return v.String(), nil }
		c.dec = func(n any, v reflect.Value) error {
			x, ok := n.(string)
			if !ok {
				return nativeErr(n, a.kind.String())
			}
			v.SetString(x)
			return nil
		}
	case kindBytes:
		if !isByteSlice(t) {
			return mismatch()
		}
		c.enc = func(v reflect.Value) (any, error) { return v.Bytes(), nil }
		c.dec = decByteSlice
	case kindFixed:
		switch {
		case isByteSlice(t):
			c.enc = func(v reflect.Value) (any, error) {
				if v.Len() != a.size {
					return nil, fmt.Errorf("%d bytes for Avro %s of size %d", v.Len(), a.describe(), a.size)
				}
				return v.Bytes(), nil
			}
			c.dec = decByteSlice
		case t.Kind() == reflect.Array && t.Elem().Kind() == reflect.Uint8 && t.Len() == a.size:
			c.enc = func(v reflect.Value) (any, error) {
				out := make([]byte, v.Len())
				reflect.Copy(reflect.ValueOf(out), v)
				return out, nil
			}
			c.dec = func(n any, v reflect.Value) error {
				x, ok := n.([]byte)
				if !ok {
					return nativeErr(n, "fixed")
				}
				if len(x) != v.Len() {
					return fmt.Errorf("%d bytes for a [%d]byte", len(x), v.Len())
				}
				reflect.Copy(v, reflect.ValueOf(x))
				return nil
			}
		default:
			return mismatch()
		}
	case kindArray:
		if t.Kind() != reflect.Slice || isByteSlice(t) {
			return mismatch()
		}
		item := b.build(path+"[]", a.items, t.Elem())
		c.enc = func(v reflect.Value) (any, error) {
			out := make([]any, v.Len())
			for i := range out {
				x, err := item.enc(v.Index(i))
				if err != nil {
					return nil, prefixErr("["+strconv.Itoa(i)+"]", err)
				}
				out[i] = x
			}
			return out, nil
		}
		c.dec = func(n any, v reflect.Value) error {
			x, ok := n.([]any)
			if !ok {
				return nativeErr(n, "array")
			}
			if len(x) == 0 {
				v.SetZero()
				return nil
			}
			s := reflect.MakeSlice(t, len(x), len(x))
			for i, e := range x {
				if err := item.dec(e, s.Index(i)); err != nil {
					return prefixErr("["+strconv.Itoa(i)+"]", err)
				}
			}
			v.Set(s)
			return nil
		}
	case kindMap:
		if t.Kind() != reflect.Map || t.Key().Kind() != reflect.String {
			return mismatch()
		}
		val := b.build(path+"{}", a.values, t.Elem())
		c.enc = func(v reflect.Value) (any, error) {
			out := make(map[string]any, v.Len())
			it := v.MapRange()
			for it.Next() {
				k := it.Key().String()
				x, err := val.enc(it.Value())
				if err != nil {
					return nil, prefixErr("["+strconv.Quote(k)+"]", err)
				}
				out[k] = x
			}
			return out, nil
		}
		c.dec = func(n any, v reflect.Value) error {
			x, ok := n.(map[string]any)
			if !ok {
				return nativeErr(n, "map")
			}
			if len(x) == 0 {
				v.SetZero()
				return nil
			}
			m := reflect.MakeMapWithSize(t, len(x))
			for k, e := range x {
				ev := reflect.New(t.Elem()).Elem()
				if err := val.dec(e, ev); err != nil {
					return prefixErr("["+strconv.Quote(k)+"]", err)
				}
				m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), ev)
			}
			v.Set(m)
			return nil
		}
	case kindUnion:
		other := optionalBranch(a)
		if other == nil {
			if t.Kind() != reflect.Struct {
				b.fail(path, "Go type %s does not fit Avro %s (a union other than [\"null\", T] needs a struct of one pointer per branch)", t, a.describe())
				return c
			}
			b.buildUnion(path, a, t, c) // union.go
			return c
		}
		if t.Kind() != reflect.Pointer {
			return mismatch()
		}
		elem := b.build(path, other, t.Elem())
		branch := other.unionKey()
		c.enc = func(v reflect.Value) (any, error) {
			if v.IsNil() {
				return nil, nil
			}
			x, err := elem.enc(v.Elem())
			if err != nil {
				return nil, err
			}
			return map[string]any{branch: x}, nil
		}
		c.dec = func(n any, v reflect.Value) error {
			if n == nil {
				v.SetZero()
				return nil
			}
			x, ok := n.(map[string]any)
			if !ok || len(x) != 1 {
				return nativeErr(n, "union")
			}
			e, ok := x[branch]
			if !ok {
				return fmt.Errorf("union value is not a %s", branch)
			}
			p := reflect.New(t.Elem())
			if err := elem.dec(e, p.Elem()); err != nil {
				return err
			}
			v.Set(p)
			return nil
		}
	case kindRecord:
		if t.Kind() != reflect.Struct {
			return mismatch()
		}
		b.buildRecord(path, a, t, c)
	default: // null
		b.fail(path, "Avro %s is not supported by the Go mapping", a.describe())
	}
	return c
}

type fieldConv struct {
	name  string // Avro field name
	index int    // Go field index
	conv  *converter
}

func (b *convBuilder) buildRecord(path string, a *avroType, t reflect.Type, c *converter) {
	goField := b.matchFields(path, a, t)
	fields := make([]fieldConv, 0, len(a.fields))
	for j, f := range a.fields {
		gi := goField[j]
		if gi < 0 {
			b.fail(path, "Avro field %s has no Go field in %s", f.name, t)
			continue
		}
		fc := b.build(joinPath(path, f.name), f.typ, t.Field(gi).Type)
		fields = append(fields, fieldConv{name: f.name, index: gi, conv: fc})
	}
	b.recordFuncs(a, fields, c)
}

// matchFields maps each Avro field of record a to the index of its Go field
// in struct t (-1 where there is none), by the rules in doc.go, reporting
// every Go field that has no Avro field or shares one. The compiled codecs
// (compiled.go) use the same matching, so both paths agree on the mapping.
func (b *convBuilder) matchFields(path string, a *avroType, t reflect.Type) []int {
	goField := make([]int, len(a.fields)) // Avro field index → Go field index
	for i := range goField {
		goField[i] = -1
	}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag, hasTag := sf.Tag.Lookup("avro")
		tag, _, _ = strings.Cut(tag, ",")
		if tag == "-" {
			continue
		}
		match := -1
		if hasTag && tag != "" {
			for j, f := range a.fields {
				if f.name == tag {
					match = j
				}
			}
			if match < 0 {
				b.fail(path, "Go field %s (tag %q) has no Avro field in %s", sf.Name, tag, a.name)
				continue
			}
		} else {
			var candidates []string
			for j, f := range a.fields {
				if strings.EqualFold(f.name, sf.Name) {
					match = j
					candidates = append(candidates, f.name)
				}
			}
			if len(candidates) == 0 {
				b.fail(path, "Go field %s has no Avro field in %s (add an avro tag?)", sf.Name, a.name)
				continue
			}
			if len(candidates) > 1 {
				b.fail(path, "Go field %s matches Avro fields %s alike; add an avro tag", sf.Name, strings.Join(candidates, ", "))
				continue
			}
		}
		if prev := goField[match]; prev >= 0 {
			b.fail(path, "Go fields %s and %s both map to Avro field %s", t.Field(prev).Name, sf.Name, a.fields[match].name)
			continue
		}
		goField[match] = i
	}
	return goField
}

func (b *convBuilder) recordFuncs(a *avroType, fields []fieldConv, c *converter) {
	c.enc = func(v reflect.Value) (any, error) {
		out := make(map[string]any, len(fields))
		for _, f := range fields {
			x, err := f.conv.enc(v.Field(f.index))
			if err != nil {
				return nil, prefixErr(f.name, err)
			}
			out[f.name] = x
		}
		return out, nil
	}
	c.dec = func(n any, v reflect.Value) error {
		m, ok := n.(map[string]any)
		if !ok {
			return nativeErr(n, "record "+a.name)
		}
		for _, f := range fields {
			x, ok := m[f.name]
			if !ok {
				return prefixErr(f.name, errors.New("missing"))
			}
			if err := f.conv.dec(x, v.Field(f.index)); err != nil {
				return prefixErr(f.name, err)
			}
		}
		return nil
	}
}

// optionalBranch returns T of a ["null", T] or [T, "null"] union, or nil.
func optionalBranch(u *avroType) *avroType {
	if len(u.branches) != 2 {
		return nil
	}
	switch {
	case u.branches[0].kind == kindNull && u.branches[1].kind != kindNull:
		return u.branches[1]
	case u.branches[1].kind == kindNull && u.branches[0].kind != kindNull:
		return u.branches[0]
	}
	return nil
}

func isByteSlice(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8
}

func decInt(n any, v reflect.Value) error {
	var x int64
	switch n := n.(type) {
	case int32:
		x = int64(n)
	case int64:
		x = n
	case int:
		x = int64(n)
	default:
		return nativeErr(n, "integer")
	}
	if v.OverflowInt(x) {
		return fmt.Errorf("%d overflows Go %s", x, v.Type())
	}
	v.SetInt(x)
	return nil
}

func decFloat(n any, v reflect.Value) error {
	switch n := n.(type) {
	case float32:
		v.SetFloat(float64(n))
	case float64:
		v.SetFloat(n)
	default:
		return nativeErr(n, "floating-point number")
	}
	return nil
}

func decByteSlice(n any, v reflect.Value) error {
	x, ok := n.([]byte)
	if !ok {
		return nativeErr(n, "bytes")
	}
	if len(x) == 0 {
		v.SetZero()
		return nil
	}
	// goavro's decoded bytes alias the input buffer, which the caller may reuse.
	out := reflect.MakeSlice(v.Type(), len(x), len(x))
	reflect.Copy(out, reflect.ValueOf(x))
	v.Set(out)
	return nil
}

func nativeErr(n any, want string) error {
	return fmt.Errorf("native value of type %T where %s was expected", n, want)
}

// pathError carries the location of an encode or decode error inside a value,
// like "recent[2].reply.status".
type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string { return e.path + ": " + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }

func prefixErr(seg string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, e := range j.Unwrap() {
			errs = append(errs, prefixErr(seg, e))
		}
		return errors.Join(errs...)
	}
	if pe, ok := err.(*pathError); ok {
		sep := "."
		if strings.HasPrefix(pe.path, "[") {
			sep = ""
		}
		return &pathError{path: seg + sep + pe.path, err: pe.err}
	}
	return &pathError{path: seg, err: err}
}
