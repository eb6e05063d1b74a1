package schemas

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/linkedin/goavro/v2"
)

// This file holds the leaves of the compiled codecs (compiled.go): Avro's
// primitives and enums, read and written in place.
//
// The decoding functions take the bytes left and return what is left after
// their value. They check every length and block count against the bytes
// left before allocating anything. They run only on data scanBinary accepted
// (Codec.fastDecode), which also bounds the nesting depth for recursive
// schemas and keeps the accept/reject decision exactly the goavro path's;
// the checks here are defence in depth, and what lets a plan decode in place.

// readLongFast reads a zigzag varint of at most 10 bytes, as goavro reads it
// (the bits of a 10th byte beyond 64 are dropped, as readLong does).
func readLongFast(buf []byte) (int64, []byte, error) {
	if len(buf) > 0 && buf[0] < 0x80 { // one byte: most lengths, counts, small numbers
		b := int64(buf[0])
		return (b >> 1) ^ -(b & 1), buf[1:], nil
	}
	return readLong(buf)
}

// readInt reads an Avro int: a long truncated to 32 bits, as goavro does.
func readInt(buf []byte) (int32, []byte, error) {
	x, rest, err := readLongFast(buf)
	return int32(x), rest, err
}

func readN(buf []byte, n int) ([]byte, []byte, error) {
	if n > len(buf) {
		return nil, nil, errShort
	}
	return buf[:n:n], buf[n:], nil
}

// readLenPrefixed reads the length and the bytes of a string or bytes value.
func readLenPrefixed(buf []byte, what string) ([]byte, []byte, error) {
	n, rest, err := readLongFast(buf)
	if err != nil {
		return nil, nil, err
	}
	if n < 0 || n > int64(len(rest)) {
		return nil, nil, fmt.Errorf("%s length %d with %d bytes left", what, n, len(rest))
	}
	return rest[:n:n], rest[n:], nil
}

func readString(buf []byte) (string, []byte, error) {
	b, rest, err := readLenPrefixed(buf, "string")
	if err != nil {
		return "", nil, err
	}
	return string(b), rest, nil
}

// readBlockCount reads the count (and, for a negative count, the byte size)
// of the next block of an array or map, bounded by what the bytes left can
// hold: items of minSize > 0 bytes each, or at most maxZeroSizeItems items
// of zero size per block (scanBinary bounds them per value).
func readBlockCount(buf []byte, minSize int, what string) (int, []byte, error) {
	n, buf, err := readLongFast(buf)
	if err != nil {
		return 0, nil, fmt.Errorf("%s block count: %w", what, err)
	}
	if n == 0 {
		return 0, buf, nil
	}
	if n < 0 {
		if n == math.MinInt64 {
			return 0, nil, fmt.Errorf("%s block count %d", what, n)
		}
		n = -n
		var size int64
		if size, buf, err = readLongFast(buf); err != nil {
			return 0, nil, fmt.Errorf("%s block size: %w", what, err)
		}
		if size < 0 || size > int64(len(buf)) {
			return 0, nil, fmt.Errorf("%s block size %d with %d bytes left", what, size, len(buf))
		}
	}
	if n > goavro.MaxBlockCount { // as goavro refuses it
		return 0, nil, fmt.Errorf("%s block count %d exceeds MaxBlockCount %d", what, n, goavro.MaxBlockCount)
	}
	if minSize > 0 {
		if n > int64(len(buf)/minSize) {
			return 0, nil, fmt.Errorf("%s block count %d with %d bytes left", what, n, len(buf))
		}
	} else if n > maxZeroSizeItems {
		return 0, nil, fmt.Errorf("%s of more than %d zero-size items", what, maxZeroSizeItems)
	}
	return int(n), buf, nil
}

func decBool(buf []byte, p unsafe.Pointer) ([]byte, error) {
	if len(buf) < 1 {
		return nil, errShort
	}
	if buf[0] > 1 {
		return nil, fmt.Errorf("invalid boolean byte %#x", buf[0])
	}
	*(*bool)(p) = buf[0] == 1
	return buf[1:], nil
}

func decLong(buf []byte, p unsafe.Pointer) ([]byte, error) {
	x, rest, err := readLongFast(buf)
	if err != nil {
		return nil, err
	}
	*(*int64)(p) = x
	return rest, nil
}

func decIntToInt64(buf []byte, p unsafe.Pointer) ([]byte, error) {
	x, rest, err := readInt(buf)
	if err != nil {
		return nil, err
	}
	*(*int64)(p) = int64(x)
	return rest, nil
}

func decInt32(buf []byte, p unsafe.Pointer) ([]byte, error) {
	x, rest, err := readInt(buf)
	if err != nil {
		return nil, err
	}
	*(*int32)(p) = x
	return rest, nil
}

func decFloat32(buf []byte, p unsafe.Pointer) ([]byte, error) {
	if len(buf) < 4 {
		return nil, errShort
	}
	*(*uint32)(p) = quietNaN32(binary.LittleEndian.Uint32(buf))
	return buf[4:], nil
}

func decFloatAsFloat64(buf []byte, p unsafe.Pointer) ([]byte, error) {
	if len(buf) < 4 {
		return nil, errShort
	}
	*(*float64)(p) = float64(math.Float32frombits(binary.LittleEndian.Uint32(buf)))
	return buf[4:], nil
}

func decDouble(buf []byte, p unsafe.Pointer) ([]byte, error) {
	if len(buf) < 8 {
		return nil, errShort
	}
	*(*float64)(p) = math.Float64frombits(binary.LittleEndian.Uint64(buf))
	return buf[8:], nil
}

func decString(buf []byte, p unsafe.Pointer) ([]byte, error) {
	s, rest, err := readString(buf)
	if err != nil {
		return nil, err
	}
	*(*string)(p) = s
	return rest, nil
}

// decBytes copies: the caller may reuse the input. Empty bytes decode to nil,
// as on the goavro path.
func decBytes(buf []byte, p unsafe.Pointer) ([]byte, error) {
	b, rest, err := readLenPrefixed(buf, "bytes")
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		*(*[]byte)(p) = nil
	} else {
		*(*[]byte)(p) = append([]byte(nil), b...)
	}
	return rest, nil
}

// enumFuncs maps a Go string to its symbol's index and back. Decoding hands
// out the schema's own symbol strings, so it allocates nothing.
func enumFuncs(a *avroType) (encFn, decFn) {
	symbols := a.symbols
	index := make(map[string]int64, len(symbols))
	for i, s := range symbols {
		index[s] = int64(i)
	}
	enc := func(buf []byte, p unsafe.Pointer) ([]byte, error) {
		s := *(*string)(p)
		i, ok := index[s]
		if !ok {
			return nil, fmt.Errorf("%q is not a symbol of enum %s", s, a.name)
		}
		return binary.AppendVarint(buf, i), nil
	}
	dec := func(buf []byte, p unsafe.Pointer) ([]byte, error) {
		i, rest, err := readLongFast(buf)
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= int64(len(symbols)) {
			return nil, fmt.Errorf("enum %s: index %d out of range", a.name, i)
		}
		*(*string)(p) = symbols[i]
		return rest, nil
	}
	return enc, dec
}

func encBool(buf []byte, p unsafe.Pointer) ([]byte, error) {
	if *(*bool)(p) {
		return append(buf, 1), nil
	}
	return append(buf, 0), nil
}

func encLong(buf []byte, p unsafe.Pointer) ([]byte, error) {
	return binary.AppendVarint(buf, *(*int64)(p)), nil
}

func encInt64AsInt(buf []byte, p unsafe.Pointer) ([]byte, error) {
	x := *(*int64)(p)
	if x < math.MinInt32 || x > math.MaxInt32 {
		return nil, fmt.Errorf("%d does not fit Avro int", x)
	}
	return binary.AppendVarint(buf, x), nil
}

func encInt32(buf []byte, p unsafe.Pointer) ([]byte, error) {
	return binary.AppendVarint(buf, int64(*(*int32)(p))), nil
}

func encFloat32(buf []byte, p unsafe.Pointer) ([]byte, error) {
	return binary.LittleEndian.AppendUint32(buf, quietNaN32(*(*uint32)(p))), nil
}

// quietNaN32 sets the quiet bit of a signalling NaN, as the goavro path's
// float32 → float64 → float32 round trip does (by reflect's Value.Float and
// SetFloat): the same bytes as goavro, also for NaN payloads.
func quietNaN32(bits uint32) uint32 {
	if bits&0x7F800000 == 0x7F800000 && bits&0x007FFFFF != 0 {
		bits |= 0x00400000
	}
	return bits
}

func encFloat64AsFloat(buf []byte, p unsafe.Pointer) ([]byte, error) {
	return binary.LittleEndian.AppendUint32(buf, math.Float32bits(float32(*(*float64)(p)))), nil
}

func encDouble(buf []byte, p unsafe.Pointer) ([]byte, error) {
	return binary.LittleEndian.AppendUint64(buf, math.Float64bits(*(*float64)(p))), nil
}

func encString(buf []byte, p unsafe.Pointer) ([]byte, error) {
	s := *(*string)(p)
	return append(binary.AppendVarint(buf, int64(len(s))), s...), nil
}

func encBytes(buf []byte, p unsafe.Pointer) ([]byte, error) {
	b := *(*[]byte)(p)
	return append(binary.AppendVarint(buf, int64(len(b))), b...), nil
}
