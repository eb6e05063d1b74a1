package schemas

import (
	"math"
	"math/rand/v2"
	"reflect"
	"unicode/utf8"
)

// The random value generator of the compiled codecs' property and fuzz
// tests, driven by the schema, and a comparison that treats equal NaNs as
// equal.

// randomRecord returns an addressable random value of Go type typ for record a.
func randomRecord(r *rand.Rand, a *avroType, typ reflect.Type) reflect.Value {
	v := reflect.New(typ).Elem()
	fillRandom(r, a, v, 0)
	return v
}

func fillRandom(r *rand.Rand, a *avroType, v reflect.Value, depth int) {
	switch a.kind {
	case kindBoolean:
		v.SetBool(r.IntN(2) == 1)
	case kindInt:
		switch v.Kind() {
		case reflect.Int8:
			v.SetInt(int64(int8(r.Uint32())))
		case reflect.Int16:
			v.SetInt(int64(int16(r.Uint32())))
		default:
			v.SetInt(int64(randomInt32(r)))
		}
	case kindLong:
		v.SetInt(randomInt64(r))
	case kindFloat:
		// Random bits, NaNs included; signalling NaNs do not survive a
		// round trip on either path (TestCompiledSignallingNaN).
		bits := r.Uint32()
		if r.IntN(4) == 0 {
			bits |= 0x7F800000 // infinities and NaNs
		}
		bits = quietNaN32(bits)
		if v.Kind() == reflect.Float32 && v.CanAddr() {
			*(*uint32)(v.Addr().UnsafePointer()) = bits
		} else {
			v.SetFloat(float64(math.Float32frombits(bits)))
		}
	case kindDouble:
		bits := r.Uint64()
		if r.IntN(4) == 0 {
			bits |= 0x7FF0000000000000
		}
		v.SetFloat(math.Float64frombits(bits))
	case kindString:
		v.SetString(randomString(r))
	case kindEnum:
		v.SetString(a.symbols[r.IntN(len(a.symbols))])
	case kindBytes:
		if n := r.IntN(12); n > 0 {
			v.SetBytes(randomBytes(r, n))
		}
	case kindFixed:
		b := randomBytes(r, a.size)
		if v.Kind() == reflect.Array {
			reflect.Copy(v, reflect.ValueOf(b))
		} else if a.size > 0 {
			v.SetBytes(b)
		}
	case kindArray:
		n := r.IntN(5)
		if depth > 3 || n == 0 {
			return
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fillRandom(r, a.items, s.Index(i), depth+1)
		}
		v.Set(s)
	case kindMap:
		n := r.IntN(4)
		if depth > 3 || n == 0 {
			return
		}
		m := reflect.MakeMap(v.Type())
		for range n {
			e := reflect.New(v.Type().Elem()).Elem()
			fillRandom(r, a.values, e, depth+1)
			m.SetMapIndex(reflect.ValueOf(randomString(r)).Convert(v.Type().Key()), e)
		}
		v.Set(m)
	case kindUnion:
		if v.Kind() == reflect.Struct { // a general union: set one branch's field
			b := &convBuilder{cache: map[convKey]*converter{}}
			fields := b.matchUnion("", a, v.Type())
			if nullBranch(a) >= 0 && r.IntN(len(fields)+1) == 0 {
				return
			}
			f := fields[r.IntN(len(fields))]
			p := reflect.New(v.Type().Field(f.index).Type.Elem())
			fillRandom(r, a.branches[f.branch], p.Elem(), depth+1)
			v.Field(f.index).Set(p)
			return
		}
		if depth > 6 || r.IntN(3) == 0 {
			return
		}
		p := reflect.New(v.Type().Elem())
		fillRandom(r, optionalBranch(a), p.Elem(), depth+1)
		v.Set(p)
	case kindRecord:
		b := &convBuilder{cache: map[convKey]*converter{}}
		for j, gi := range b.matchFields("", a, v.Type()) {
			fillRandom(r, a.fields[j].typ, v.Field(gi), depth+1)
		}
	}
}

func randomInt32(r *rand.Rand) int32 {
	switch r.IntN(4) {
	case 0:
		return int32(r.IntN(128)) - 64
	case 1:
		return []int32{math.MinInt32, math.MaxInt32, 0, -1, 63, 64, -65}[r.IntN(7)]
	default:
		return int32(r.Uint32())
	}
}

func randomInt64(r *rand.Rand) int64 {
	switch r.IntN(4) {
	case 0:
		return int64(r.IntN(256)) - 128
	case 1:
		return []int64{math.MinInt64, math.MaxInt64, 0, -1, math.MaxInt32 + 1, math.MinInt32 - 1}[r.IntN(6)]
	default:
		return int64(r.Uint64() >> r.IntN(64))
	}
}

// randomString mixes ASCII, multi-byte runes and invalid UTF-8 (Avro
// strings are bytes to goavro and to the compiled path alike).
func randomString(r *rand.Rand) string {
	var b []byte
	for range r.IntN(10) {
		switch r.IntN(4) {
		case 0:
			b = utf8.AppendRune(b, rune(0x80+r.IntN(0x10000)))
		case 1:
			b = append(b, byte(r.Uint32()))
		default:
			b = append(b, byte('a'+r.IntN(26)))
		}
	}
	return string(b)
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// equalNaN is reflect.DeepEqual, except that a NaN equals a NaN of the same
// bits. Floats are compared bit for bit where addressable (reflect's Float
// converts a float32 to float64, which sets the quiet bit of a NaN).
func equalNaN(a, b reflect.Value) bool {
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Float32:
		if a.CanAddr() && b.CanAddr() {
			return *(*uint32)(a.Addr().UnsafePointer()) == *(*uint32)(b.Addr().UnsafePointer())
		}
		fallthrough
	case reflect.Float64:
		x, y := a.Float(), b.Float()
		return x == y || (x != x && y != y && math.Float64bits(x) == math.Float64bits(y))
	case reflect.Struct:
		for i := range a.NumField() {
			if !equalNaN(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		fallthrough
	case reflect.Array:
		for i := range a.Len() {
			if !equalNaN(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equalNaN(a.Elem(), b.Elem())
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		it := a.MapRange()
		for it.Next() {
			w := b.MapIndex(it.Key())
			if !w.IsValid() || !equalNaN(it.Value(), w) {
				return false
			}
		}
		return true
	case reflect.String:
		return a.String() == b.String()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint8:
		return a.Uint() == b.Uint()
	}
	panic("equalNaN: unexpected kind " + a.Kind().String())
}

func ptrTo[T any](v T) *T { return &v }
