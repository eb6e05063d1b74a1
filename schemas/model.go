package schemas

import (
	"encoding/json"
	"fmt"
	"strings"
)

// This file holds the package's own model of an Avro schema. goavro keeps its
// parsed schema private, but three things here need it: the reflection mapping
// (field names, union branch names), the binary pre-scan that protects goavro
// from hostile block counts, and the field order of EncodeJSON's output.

type kind uint8

const (
	kindNull kind = iota
	kindBoolean
	kindInt
	kindLong
	kindFloat
	kindDouble
	kindBytes
	kindString
	kindRecord
	kindEnum
	kindFixed
	kindArray
	kindMap
	kindUnion
)

var kindNames = [...]string{
	kindNull:    "null",
	kindBoolean: "boolean",
	kindInt:     "int",
	kindLong:    "long",
	kindFloat:   "float",
	kindDouble:  "double",
	kindBytes:   "bytes",
	kindString:  "string",
	kindRecord:  "record",
	kindEnum:    "enum",
	kindFixed:   "fixed",
	kindArray:   "array",
	kindMap:     "map",
	kindUnion:   "union",
}

func (k kind) String() string { return kindNames[k] }

var primitiveKinds = map[string]kind{
	"null":    kindNull,
	"boolean": kindBoolean,
	"int":     kindInt,
	"long":    kindLong,
	"float":   kindFloat,
	"double":  kindDouble,
	"bytes":   kindBytes,
	"string":  kindString,
}

// avroType is one node of a parsed schema. Named types (record, enum, fixed)
// are shared: every reference points at the one definition, so a recursive
// schema is a cyclic graph.
type avroType struct {
	kind    kind
	name    string // full name of a record, enum or fixed
	doc     string
	logical string   // the logicalType attribute, if any
	aliases []string // former names of a record, enum or fixed (short or full)

	fields   []*avroField // record
	symbols  []string     // enum
	enumDef  *string      // enum default symbol
	size     int          // fixed
	items    *avroType    // array
	values   *avroType    // map
	branches []*avroType  // union

	// minSize is the fewest bytes a value of this type takes in binary form
	// (a lower bound for recursive types). The pre-scan uses it to bound
	// block counts by the bytes that are left.
	minSize int
}

type avroField struct {
	name       string
	aliases    []string // former names of the field, for resolution
	doc        string
	typ        *avroType
	hasDefault bool
	def        any // the default as decoded by encoding/json
	// personal is the "kcqrs.personal" property (personal.go): the
	// field holds personal data, stored encrypted per data subject.
	personal bool
}

// describe names t the way error messages do: "long", "enum kcqrs.ReplyStatus",
// "array<string>", "union [null, string]".
func (t *avroType) describe() string {
	switch t.kind {
	case kindRecord, kindEnum, kindFixed:
		return t.kind.String() + " " + t.name
	case kindArray:
		return "array<" + t.items.describe() + ">"
	case kindMap:
		return "map<" + t.values.describe() + ">"
	case kindUnion:
		parts := make([]string, len(t.branches))
		for i, b := range t.branches {
			parts[i] = b.describe()
		}
		return "union [" + strings.Join(parts, ", ") + "]"
	default:
		if t.logical != "" {
			return t.kind.String() + " (logicalType " + t.logical + ")"
		}
		return t.kind.String()
	}
}

// unionKey is the key goavro uses for a non-null union value in native form:
// the full name of a named type, otherwise the type's name.
func (t *avroType) unionKey() string {
	switch t.kind {
	case kindRecord, kindEnum, kindFixed:
		return t.name
	default:
		if t.logical != "" && goavroLogical[t.kind.String()+"."+t.logical] {
			return t.kind.String() + "." + t.logical
		}
		return t.kind.String()
	}
}

// goavroLogical lists the logical types goavro turns into other Go types
// (time.Time, time.Duration, *big.Rat). The reflection mapping does not
// support them; other logical types are plain primitives to goavro.
var goavroLogical = map[string]bool{
	"long.timestamp-millis": true,
	"long.timestamp-micros": true,
	"int.time-millis":       true,
	"long.time-micros":      true,
	"int.date":              true,
	"bytes.decimal":         true,
	"fixed.decimal":         true,
}

// schemaParser parses one schema file. goavro has already validated the file,
// so the checks here only guard this package's own assumptions.
type schemaParser struct {
	named map[string]*avroType
	order []*avroType // named types in order of definition
}

func parseSchema(text []byte) (*avroType, *schemaParser, error) {
	var doc any
	if err := json.Unmarshal(text, &doc); err != nil {
		return nil, nil, err
	}
	p := &schemaParser{named: map[string]*avroType{}}
	t, err := p.parse(doc, "")
	if err != nil {
		return nil, nil, err
	}
	for _, n := range p.order {
		computeMinSize(n, map[*avroType]bool{})
	}
	computeMinSize(t, map[*avroType]bool{})
	return t, p, nil
}

func (p *schemaParser) parse(v any, ns string) (*avroType, error) {
	switch v := v.(type) {
	case string:
		return p.resolve(v, ns)
	case []any:
		u := &avroType{kind: kindUnion}
		for _, b := range v {
			bt, err := p.parse(b, ns)
			if err != nil {
				return nil, err
			}
			u.branches = append(u.branches, bt)
		}
		return u, nil
	case map[string]any:
		return p.parseObject(v, ns)
	default:
		return nil, fmt.Errorf("a schema must be a string, an object or an array, not %T", v)
	}
}

func (p *schemaParser) resolve(name, ns string) (*avroType, error) {
	if k, ok := primitiveKinds[name]; ok {
		return &avroType{kind: k}, nil
	}
	if !strings.Contains(name, ".") && ns != "" {
		if t, ok := p.named[ns+"."+name]; ok {
			return t, nil
		}
	}
	if t, ok := p.named[name]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("unknown type %q", name)
}

func (p *schemaParser) parseObject(m map[string]any, ns string) (*avroType, error) {
	switch tv := m["type"].(type) {
	case map[string]any, []any:
		return p.parse(tv, ns)
	case string:
		switch tv {
		case "record", "error", "enum", "fixed":
			return p.parseNamed(tv, m, ns)
		case "array":
			items, err := p.parse(m["items"], ns)
			if err != nil {
				return nil, fmt.Errorf("array items: %w", err)
			}
			return &avroType{kind: kindArray, items: items}, nil
		case "map":
			values, err := p.parse(m["values"], ns)
			if err != nil {
				return nil, fmt.Errorf("map values: %w", err)
			}
			return &avroType{kind: kindMap, values: values}, nil
		}
		if k, ok := primitiveKinds[tv]; ok {
			t := &avroType{kind: k}
			if lt, ok := m["logicalType"].(string); ok {
				t.logical = lt
			}
			return t, nil
		}
		return p.resolve(tv, ns)
	default:
		return nil, fmt.Errorf("missing or invalid \"type\" attribute")
	}
}

func (p *schemaParser) parseNamed(typ string, m map[string]any, ns string) (*avroType, error) {
	short, _ := m["name"].(string)
	if short == "" {
		return nil, fmt.Errorf("a %s needs a name", typ)
	}
	full := short
	if i := strings.LastIndexByte(short, '.'); i >= 0 {
		ns = short[:i]
	} else {
		if explicit, ok := m["namespace"].(string); ok {
			ns = explicit
		}
		if ns != "" {
			full = ns + "." + short
		}
	}
	if _, dup := p.named[full]; dup {
		return nil, fmt.Errorf("%s is defined twice", full)
	}
	t := &avroType{name: full, aliases: stringList(m["aliases"])}
	t.doc, _ = m["doc"].(string)
	t.logical, _ = m["logicalType"].(string)
	p.named[full] = t // before the fields, so that a record may refer to itself
	p.order = append(p.order, t)

	switch typ {
	case "record", "error":
		t.kind = kindRecord
		fields, ok := m["fields"].([]any)
		if !ok {
			return nil, fmt.Errorf("record %s needs a fields array", full)
		}
		for i, f := range fields {
			fm, ok := f.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("record %s field %d is not an object", full, i+1)
			}
			name, _ := fm["name"].(string)
			if name == "" {
				return nil, fmt.Errorf("record %s field %d has no name", full, i+1)
			}
			ft, err := p.parse(fm["type"], ns)
			if err != nil {
				return nil, fmt.Errorf("record %s field %q: %w", full, name, err)
			}
			af := &avroField{name: name, typ: ft, aliases: stringList(fm["aliases"])}
			af.doc, _ = fm["doc"].(string)
			af.def, af.hasDefault = fm["default"]
			if af.personal, err = personalProp(fm); err != nil {
				return nil, fmt.Errorf("record %s field %q: %w", full, name, err)
			}
			t.fields = append(t.fields, af)
		}
	case "enum":
		t.kind = kindEnum
		syms, _ := m["symbols"].([]any)
		for _, s := range syms {
			str, ok := s.(string)
			if !ok {
				return nil, fmt.Errorf("enum %s has a symbol that is not a string", full)
			}
			t.symbols = append(t.symbols, str)
		}
		if d, ok := m["default"].(string); ok {
			t.enumDef = &d
		}
	case "fixed":
		t.kind = kindFixed
		size, ok := m["size"].(float64)
		if !ok || size < 0 || size != float64(int(size)) {
			return nil, fmt.Errorf("fixed %s needs a non-negative integer size", full)
		}
		t.size = int(size)
	}
	return t, nil
}

// stringList returns the strings of a JSON array attribute like "aliases".
func stringList(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// computeMinSize fills in minSize; a type already being computed (a cycle)
// counts as zero, which keeps the result a lower bound.
func computeMinSize(t *avroType, visiting map[*avroType]bool) int {
	if visiting[t] {
		return 0
	}
	switch t.kind {
	case kindNull:
		t.minSize = 0
	case kindBoolean, kindInt, kindLong, kindEnum, kindBytes, kindString, kindArray, kindMap, kindUnion:
		t.minSize = 1
	case kindFloat:
		t.minSize = 4
	case kindDouble:
		t.minSize = 8
	case kindFixed:
		t.minSize = t.size
	case kindRecord:
		visiting[t] = true
		n := 0
		for _, f := range t.fields {
			n += computeMinSize(f.typ, visiting)
		}
		delete(visiting, t)
		t.minSize = n
	}
	switch t.kind {
	case kindArray:
		computeMinSize(t.items, visiting)
	case kindMap:
		computeMinSize(t.values, visiting)
	case kindUnion:
		for _, b := range t.branches {
			computeMinSize(b, visiting)
		}
	}
	return t.minSize
}

// canonical renders t in the Parsing Canonical Form of the Avro
// specification. With defaults it also keeps field and enum defaults; that
// form is used to check that a named type defined in two files is the same.
func canonical(t *avroType, withDefaults bool) string {
	var b strings.Builder
	writeCanonical(&b, t, map[*avroType]bool{}, withDefaults)
	return b.String()
}

func writeCanonical(b *strings.Builder, t *avroType, seen map[*avroType]bool, withDefaults bool) {
	quote := func(s string) {
		q, _ := json.Marshal(s)
		b.Write(q)
	}
	switch t.kind {
	case kindRecord, kindEnum, kindFixed:
		if seen[t] {
			quote(t.name)
			return
		}
		seen[t] = true
		b.WriteString(`{"name":`)
		quote(t.name)
		b.WriteString(`,"type":`)
		quote(t.kind.String())
		switch t.kind {
		case kindRecord:
			b.WriteString(`,"fields":[`)
			for i, f := range t.fields {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(`{"name":`)
				quote(f.name)
				b.WriteString(`,"type":`)
				writeCanonical(b, f.typ, seen, withDefaults)
				if withDefaults && f.hasDefault {
					d, _ := json.Marshal(f.def)
					b.WriteString(`,"default":`)
					b.Write(d)
				}
				b.WriteByte('}')
			}
			b.WriteByte(']')
		case kindEnum:
			b.WriteString(`,"symbols":[`)
			for i, s := range t.symbols {
				if i > 0 {
					b.WriteByte(',')
				}
				quote(s)
			}
			b.WriteByte(']')
			if withDefaults && t.enumDef != nil {
				b.WriteString(`,"default":`)
				quote(*t.enumDef)
			}
		case kindFixed:
			fmt.Fprintf(b, `,"size":%d`, t.size)
		}
		b.WriteByte('}')
	case kindArray:
		b.WriteString(`{"type":"array","items":`)
		writeCanonical(b, t.items, seen, withDefaults)
		b.WriteByte('}')
	case kindMap:
		b.WriteString(`{"type":"map","values":`)
		writeCanonical(b, t.values, seen, withDefaults)
		b.WriteByte('}')
	case kindUnion:
		b.WriteByte('[')
		for i, br := range t.branches {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, br, seen, withDefaults)
		}
		b.WriteByte(']')
	default:
		quote(t.kind.String())
	}
}
