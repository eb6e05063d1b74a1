package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// checkJSONFields validates a JSON document against the schema before goavro
// decodes it. goavro would reject the same documents, but with messages like
// "only found 8 of 9 fields" or "short buffer"; a client sending a JSON
// command deserves "message: missing required field". The errors name the
// path of the offending value.
func checkJSONFields(t *avroType, data []byte) error {
	// goavro would keep invalid bytes in strings as they are, and write them
	// back as U+FFFD.
	if !utf8.Valid(data) {
		return errors.New("invalid JSON: not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("invalid JSON: data after the record")
	}
	if err := checkSurrogates(data); err != nil {
		return err
	}
	return checkJSON(t, v, 0)
}

// checkSurrogates refuses a \u escape of a UTF-16 surrogate that is not
// half of a pair: it is no character (encoding/json reads it as U+FFFD, and
// goavro "\ud800\u0041" as U+FFFD alone, losing the "A"). data is valid
// JSON, so a backslash is always inside a string.
func checkSurrogates(data []byte) error {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(data) || data[i] != '\\' || data[i+1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(data[i+2:i+6]), 16, 16)
		return rune(v), err == nil
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		r, ok := hex4(i)
		if !ok {
			i++ // a two-byte escape such as \\ or \"
			continue
		}
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if lo, ok := hex4(i + 6); ok && lo >= 0xDC00 && lo < 0xE000 {
				i += 11
				continue
			}
			return fmt.Errorf("invalid JSON: \\u%04x is half of a UTF-16 surrogate pair, without its other half", r)
		case r >= 0xDC00 && r < 0xE000:
			return fmt.Errorf("invalid JSON: \\u%04x is half of a UTF-16 surrogate pair, without its other half", r)
		}
		i += 5
	}
	return nil
}

func checkJSON(t *avroType, v any, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("nested deeper than %d", maxDepth)
	}
	switch t.kind {
	case kindNull:
		if v != nil {
			return jsonTypeErr(t, v)
		}
	case kindBoolean:
		if _, ok := v.(bool); !ok {
			return jsonTypeErr(t, v)
		}
	case kindInt, kindLong:
		n, ok := v.(json.Number)
		if !ok {
			return jsonTypeErr(t, v)
		}
		bits := 64
		if t.kind == kindInt {
			bits = 32
		}
		if _, err := strconv.ParseInt(string(n), 10, bits); err != nil {
			return fmt.Errorf("%s is not an Avro %s (a %d-bit integer)", n, t.kind, bits)
		}
	case kindFloat, kindDouble:
		// goavro writes NaN as null.
		if _, ok := v.(json.Number); !ok && v != nil {
			return jsonTypeErr(t, v)
		}
	case kindString:
		if _, ok := v.(string); !ok {
			return jsonTypeErr(t, v)
		}
	case kindBytes, kindFixed:
		s, ok := v.(string)
		if !ok {
			return jsonTypeErr(t, v)
		}
		n := 0
		for _, r := range s {
			if r > 0xFF {
				return fmt.Errorf("Avro %s in JSON is a string of code points U+0000 to U+00FF, found %U", t.describe(), r)
			}
			n++
		}
		if t.kind == kindFixed && n != t.size {
			return fmt.Errorf("%d bytes for Avro %s of size %d", n, t.describe(), t.size)
		}
	case kindEnum:
		s, ok := v.(string)
		if !ok {
			return jsonTypeErr(t, v)
		}
		for _, sym := range t.symbols {
			if s == sym {
				return nil
			}
		}
		return fmt.Errorf("%q is not a symbol of enum %s (%s)", s, t.name, strings.Join(t.symbols, ", "))
	case kindArray:
		a, ok := v.([]any)
		if !ok {
			return jsonTypeErr(t, v)
		}
		for i, e := range a {
			if err := checkJSON(t.items, e, depth+1); err != nil {
				return prefixErr("["+strconv.Itoa(i)+"]", err)
			}
		}
	case kindMap:
		m, ok := v.(map[string]any)
		if !ok {
			return jsonTypeErr(t, v)
		}
		for _, k := range sortedKeys(m) {
			if err := checkJSON(t.values, m[k], depth+1); err != nil {
				return prefixErr("["+strconv.Quote(k)+"]", err)
			}
		}
	case kindUnion:
		if v == nil {
			for _, b := range t.branches {
				if b.kind == kindNull {
					return nil
				}
			}
			return jsonTypeErr(t, v)
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			return fmt.Errorf("a value of Avro %s is null or an object with one key naming its type, like {%q: ...}", t.describe(), nonNullKey(t))
		}
		for k, e := range m {
			for _, b := range t.branches {
				if b.kind != kindNull && b.unionKey() == k {
					return prefixErr(k, checkJSON(b, e, depth+1))
				}
			}
			return fmt.Errorf("%q is not a type of Avro %s", k, t.describe())
		}
	case kindRecord:
		m, ok := v.(map[string]any)
		if !ok {
			return jsonTypeErr(t, v)
		}
		var errs []error
		known := make(map[string]bool, len(t.fields))
		for _, f := range t.fields {
			known[f.name] = true
			e, ok := m[f.name]
			if !ok {
				if !f.hasDefault {
					errs = append(errs, prefixErr(f.name, errors.New("missing required field")))
				}
				continue
			}
			if err := checkJSON(f.typ, e, depth+1); err != nil {
				errs = append(errs, prefixErr(f.name, err))
			}
		}
		for _, k := range sortedKeys(m) {
			if !known[k] {
				errs = append(errs, prefixErr(k, fmt.Errorf("unknown field of record %s", t.name)))
			}
		}
		return errors.Join(errs...)
	}
	return nil
}

func nonNullKey(t *avroType) string {
	for _, b := range t.branches {
		if b.kind != kindNull {
			return b.unionKey()
		}
	}
	return "null"
}

func jsonTypeErr(t *avroType, v any) error {
	return fmt.Errorf("want Avro %s, got JSON %s", t.describe(), jsonKind(v))
}

func jsonKind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(v)
	case json.Number:
		return "number " + string(v)
	case string:
		if utf8.RuneCountInString(v) > 40 {
			v = string([]rune(v)[:40]) + "…"
		}
		return "string " + strconv.Quote(v)
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
