package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// goavro writes the fields of a record (and the keys of a map) in Go's random
// map order, so the same value would give different JSON each time. orderJSON
// rewrites goavro's output with record fields in schema order and map keys
// sorted, leaving every scalar exactly as goavro wrote it.
func orderJSON(buf []byte, t *avroType, raw []byte) ([]byte, error) {
	switch t.kind {
	case kindRecord:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
		buf = append(buf, '{')
		n := 0
		for _, f := range t.fields {
			v, ok := obj[f.name]
			if !ok {
				continue
			}
			if n > 0 {
				buf = append(buf, ',')
			}
			n++
			var err error
			buf = appendJSONString(buf, f.name)
			buf = append(buf, ':')
			if buf, err = orderJSON(buf, f.typ, v); err != nil {
				return nil, err
			}
		}
		if n != len(obj) {
			return nil, fmt.Errorf("record %s: unexpected keys", t.name)
		}
		return append(buf, '}'), nil
	case kindMap:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf = append(buf, '{')
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			buf = appendJSONString(buf, k)
			buf = append(buf, ':')
			if buf, err = orderJSON(buf, t.values, obj[k]); err != nil {
				return nil, err
			}
		}
		return append(buf, '}'), nil
	case kindArray:
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			return nil, err
		}
		buf = append(buf, '[')
		for i, v := range arr {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = orderJSON(buf, t.items, v); err != nil {
				return nil, err
			}
		}
		return append(buf, ']'), nil
	case kindUnion:
		raw = bytes.TrimSpace(raw)
		if bytes.Equal(raw, []byte("null")) {
			return append(buf, "null"...), nil
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
		if len(obj) != 1 {
			return nil, fmt.Errorf("union value with %d keys", len(obj))
		}
		for k, v := range obj {
			for _, b := range t.branches {
				if b.unionKey() == k {
					var err error
					buf = append(buf, '{')
					buf = appendJSONString(buf, k)
					buf = append(buf, ':')
					if buf, err = orderJSON(buf, b, v); err != nil {
						return nil, err
					}
					return append(buf, '}'), nil
				}
			}
			return nil, fmt.Errorf("union branch %q unknown", k)
		}
	}
	return append(buf, bytes.TrimSpace(raw)...), nil
}

func appendJSONString(buf []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(buf, q...)
}
