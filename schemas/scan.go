package schemas

import (
	"errors"
	"fmt"
	"math"
)

// The pre-scan walks binary Avro data against the schema without building any
// values, before goavro decodes it. goavro trusts the block count of an array
// or map and allocates that many slots up front (up to math.MaxInt32 of them),
// so ten hostile bytes could ask for tens of gigabytes. The pre-scan rejects a
// block count larger than the bytes that are left could hold, and bounds the
// nesting depth and the number of zero-size items (nulls, empty records).

const (
	// maxDepth bounds the nesting of records, arrays, maps and unions.
	maxDepth = 1000
	// maxZeroSizeItems bounds the items of zero-size types in one array.
	maxZeroSizeItems = 1 << 16
)

var (
	errShort   = errors.New("unexpected end of data")
	stringType = &avroType{kind: kindString, minSize: 1}
)

func readLong(buf []byte) (int64, []byte, error) {
	var v uint64
	var shift uint
	for i := 0; i < len(buf) && i < 10; i++ {
		b := buf[i]
		v |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			return int64(v>>1) ^ -int64(v&1), buf[i+1:], nil
		}
		shift += 7
	}
	if len(buf) >= 10 {
		return 0, nil, errors.New("varint longer than 10 bytes")
	}
	return 0, nil, errShort
}

// scanBinary checks that buf holds exactly one value of t.
func scanBinary(t *avroType, buf []byte) error {
	rest, err := scan(t, buf, 0)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d bytes left after the %s", len(rest), t.describe())
	}
	return nil
}

func scan(t *avroType, buf []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxDepth)
	}
	switch t.kind {
	case kindNull:
		return buf, nil
	case kindBoolean:
		if len(buf) < 1 {
			return nil, errShort
		}
		if buf[0] > 1 {
			return nil, fmt.Errorf("invalid boolean byte %#x", buf[0])
		}
		return buf[1:], nil
	case kindInt, kindLong:
		_, rest, err := readLong(buf)
		return rest, err
	case kindEnum:
		i, rest, err := readLong(buf)
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= int64(len(t.symbols)) {
			return nil, fmt.Errorf("enum %s: index %d out of range", t.name, i)
		}
		return rest, nil
	case kindFloat, kindDouble, kindFixed:
		n := t.minSize
		if len(buf) < n {
			return nil, errShort
		}
		return buf[n:], nil
	case kindBytes, kindString:
		n, rest, err := readLong(buf)
		if err != nil {
			return nil, err
		}
		if n < 0 || n > int64(len(rest)) {
			return nil, fmt.Errorf("%s length %d with %d bytes left", t.kind, n, len(rest))
		}
		return rest[n:], nil
	case kindRecord:
		var err error
		for _, f := range t.fields {
			if buf, err = scan(f.typ, buf, depth+1); err != nil {
				if depth > 8 {
					return nil, err // keep the message short when deeply nested
				}
				return nil, fmt.Errorf("%s.%s: %w", t.name, f.name, err)
			}
		}
		return buf, nil
	case kindUnion:
		i, rest, err := readLong(buf)
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= int64(len(t.branches)) {
			return nil, fmt.Errorf("union branch %d out of range", i)
		}
		return scan(t.branches[i], rest, depth+1)
	case kindArray, kindMap:
		return scanBlocks(t, buf, depth)
	}
	return nil, fmt.Errorf("unsupported type %s", t.kind)
}

func scanBlocks(t *avroType, buf []byte, depth int) ([]byte, error) {
	item := t.items
	itemSize := 0
	if t.kind == kindMap {
		item = t.values
		itemSize = 1 // the key
	}
	itemSize += item.minSize
	var zeroSize int64
	for {
		n, rest, err := readLong(buf)
		if err != nil {
			return nil, fmt.Errorf("%s block count: %w", t.kind, err)
		}
		buf = rest
		if n == 0 {
			return buf, nil
		}
		if n < 0 {
			if n == math.MinInt64 {
				return nil, fmt.Errorf("%s block count %d", t.kind, n)
			}
			n = -n
			size, rest, err := readLong(buf)
			if err != nil {
				return nil, fmt.Errorf("%s block size: %w", t.kind, err)
			}
			if size < 0 || size > int64(len(rest)) {
				return nil, fmt.Errorf("%s block size %d with %d bytes left", t.kind, size, len(rest))
			}
			buf = rest
		}
		if itemSize > 0 {
			if n > int64(len(buf)/itemSize) {
				return nil, fmt.Errorf("%s block count %d with %d bytes left", t.kind, n, len(buf))
			}
		} else if zeroSize += n; zeroSize > maxZeroSizeItems {
			return nil, fmt.Errorf("%s of more than %d zero-size items", t.kind, maxZeroSizeItems)
		}
		for i := int64(0); i < n; i++ {
			if t.kind == kindMap {
				if buf, err = scan(stringType, buf, depth+1); err != nil {
					return nil, fmt.Errorf("map key: %w", err)
				}
			}
			if buf, err = scan(item, buf, depth+1); err != nil {
				if depth > 8 {
					return nil, err
				}
				return nil, fmt.Errorf("%s item %d: %w", t.kind, i, err)
			}
		}
	}
}
