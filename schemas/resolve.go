package schemas

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// This file implements the schema resolution of the Avro specification
// ("Schema Resolution"), which goavro lacks: data written with one schema
// (the writer's) is read as another (the reader's), aliases included (a
// reader's field or named type may list the writer's name among its
// "aliases"). It works on goavro's
// native form: the writer's codec decodes the bytes, a resolver built once
// per (writer, reader) pair turns that native value into the native value of
// the reader's schema, and the reader's codec maps it to Go. Decoding twice
// costs more than a resolving decoder would, but only old data takes this
// path and the code stays small enough to test rule by rule.

// ResolveError is one place where a writer's schema cannot be read as a
// reader's: Path names the field ("MoneyDeposited.amount", "Snapshot.recent[]"),
// Reason what is wrong. A resolver reports every one when it is built
// (Compatible) and returns the first one met by a value when it runs.
type ResolveError struct {
	Path   string
	Reason string
}

func (e *ResolveError) Error() string {
	return "schemas: cannot resolve " + e.Path + ": " + e.Reason
}

// resolver turns a native value of the writer's schema into one of the
// reader's.
type resolver struct {
	fn func(any) (any, error)
}

type resolveBuilder struct {
	memo     map[[2]*avroType]*resolver
	problems []error
}

// newResolver builds the resolver of writer w read as reader r, and lists
// every incompatibility. Per the specification some incompatibilities only
// matter for some values (a union branch the reader lacks, an enum symbol it
// lacks and has no default for); the resolver fails only when it meets such a
// value, so old data that never used them stays readable. A backward
// compatible change has no problems at all.
func newResolver(w, r *avroType) (*resolver, []error) {
	b := &resolveBuilder{memo: map[[2]*avroType]*resolver{}}
	res := b.build(shortName(r.name), w, r)
	return res, b.problems
}

func (b *resolveBuilder) fail(path, format string, args ...any) *resolver {
	err := &ResolveError{Path: path, Reason: fmt.Sprintf(format, args...)}
	b.problems = append(b.problems, err)
	return &resolver{fn: func(any) (any, error) { return nil, err }}
}

// sameName reports whether a reader's named type reads a writer's: the same
// unqualified name, or the writer's name among the reader's aliases (a
// renamed type).
func sameName(w, r *avroType) bool {
	if shortName(w.name) == shortName(r.name) {
		return true
	}
	for _, a := range r.aliases {
		if a == w.name || shortName(a) == shortName(w.name) {
			return true
		}
	}
	return false
}

func shortName(full string) string {
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		return full[i+1:]
	}
	return full
}

func (b *resolveBuilder) build(path string, w, r *avroType) *resolver {
	key := [2]*avroType{w, r}
	if res, ok := b.memo[key]; ok {
		return res // a recursive type: filled in by the outer call
	}
	res := &resolver{}
	b.memo[key] = res
	built := b.buildNode(path, w, r)
	res.fn = built.fn
	return res
}

func (b *resolveBuilder) buildNode(path string, w, r *avroType) *resolver {
	// A writer's union is resolved branch by branch, whatever the reader is.
	if w.kind == kindUnion {
		return b.writerUnion(path, w, r)
	}
	if r.kind == kindUnion {
		return b.readerUnion(path, w, r)
	}
	if conv, ok := promotion(w.kind, r.kind); ok {
		return &resolver{fn: conv}
	}
	if w.kind != r.kind {
		return b.fail(path, "writer's %s cannot be read as %s", w.describe(), r.describe())
	}
	switch w.kind {
	case kindRecord:
		return b.record(path, w, r)
	case kindEnum:
		return b.enum(path, w, r)
	case kindFixed:
		if !sameName(w, r) {
			return b.fail(path, "writer's %s cannot be read as %s (names differ)", w.describe(), r.describe())
		}
		if w.size != r.size {
			return b.fail(path, "writer's %s has size %d, reader's %d", w.describe(), w.size, r.size)
		}
		return &resolver{fn: identity}
	case kindArray:
		items := b.build(path+"[]", w.items, r.items)
		return &resolver{fn: func(v any) (any, error) {
			in, ok := v.([]any)
			if !ok {
				return nil, nativeMismatch(path, v, "array")
			}
			out := make([]any, len(in))
			for i, x := range in {
				y, err := items.fn(x)
				if err != nil {
					return nil, err
				}
				out[i] = y
			}
			return out, nil
		}}
	case kindMap:
		values := b.build(path+"{}", w.values, r.values)
		return &resolver{fn: func(v any) (any, error) {
			in, ok := v.(map[string]any)
			if !ok {
				return nil, nativeMismatch(path, v, "map")
			}
			out := make(map[string]any, len(in))
			for k, x := range in {
				y, err := values.fn(x)
				if err != nil {
					return nil, err
				}
				out[k] = y
			}
			return out, nil
		}}
	default: // the same primitive
		return &resolver{fn: identity}
	}
}

func identity(v any) (any, error) { return v, nil }

func nativeMismatch(path string, v any, want string) error {
	return &ResolveError{Path: path, Reason: fmt.Sprintf("native value %T is not a %s", v, want)}
}

// promotion returns the conversion of the specification's promotions: int to
// long, float or double; long to float or double; float to double; string to
// bytes and back.
func promotion(w, r kind) (func(any) (any, error), bool) {
	switch {
	case w == kindInt && r == kindLong:
		return func(v any) (any, error) { i, err := asInt32(v); return int64(i), err }, true
	case w == kindInt && r == kindFloat:
		return func(v any) (any, error) { i, err := asInt32(v); return float32(i), err }, true
	case w == kindInt && r == kindDouble:
		return func(v any) (any, error) { i, err := asInt32(v); return float64(i), err }, true
	case w == kindLong && r == kindFloat:
		return func(v any) (any, error) { i, err := asInt64(v); return float32(i), err }, true
	case w == kindLong && r == kindDouble:
		return func(v any) (any, error) { i, err := asInt64(v); return float64(i), err }, true
	case w == kindFloat && r == kindDouble:
		return func(v any) (any, error) {
			f, ok := v.(float32)
			if !ok {
				return nil, fmt.Errorf("schemas: native %T is not a float", v)
			}
			return float64(f), nil
		}, true
	case w == kindString && r == kindBytes:
		return func(v any) (any, error) {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("schemas: native %T is not a string", v)
			}
			return []byte(s), nil
		}, true
	case w == kindBytes && r == kindString:
		return func(v any) (any, error) {
			p, ok := v.([]byte)
			if !ok {
				return nil, fmt.Errorf("schemas: native %T is not bytes", v)
			}
			return string(p), nil
		}, true
	}
	return nil, false
}

func asInt32(v any) (int32, error) {
	i, ok := v.(int32)
	if !ok {
		return 0, fmt.Errorf("schemas: native %T is not an int", v)
	}
	return i, nil
}

func asInt64(v any) (int64, error) {
	i, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("schemas: native %T is not a long", v)
	}
	return i, nil
}

// matches is the specification's test for picking a union branch: the same
// primitive, a promotion, or a named type or container of the same kind and
// (unqualified) name. exact leaves promotions out, so that an exact branch
// is preferred to a promoting one.
func matches(w, r *avroType, exact bool) bool {
	if w.kind == r.kind {
		switch w.kind {
		case kindRecord, kindEnum, kindFixed:
			return sameName(w, r)
		}
		return true
	}
	if exact {
		return false
	}
	_, ok := promotion(w.kind, r.kind)
	return ok
}

func pickBranch(w *avroType, u *avroType) int {
	for _, exact := range []bool{true, false} {
		for i, br := range u.branches {
			if matches(w, br, exact) {
				return i
			}
		}
	}
	return -1
}

// readerUnion resolves a non-union writer against the first matching branch
// of the reader's union.
func (b *resolveBuilder) readerUnion(path string, w, r *avroType) *resolver {
	i := pickBranch(w, r)
	if i < 0 {
		return b.fail(path, "writer's %s matches no branch of the reader's %s", w.describe(), r.describe())
	}
	br := r.branches[i]
	inner := b.build(path, w, br)
	return &resolver{fn: func(v any) (any, error) {
		x, err := inner.fn(v)
		if err != nil {
			return nil, err
		}
		return wrapUnion(br, x), nil
	}}
}

// wrapUnion gives a union value in goavro's native form: nil for null, else
// a one-entry map from the branch's name to the value.
func wrapUnion(br *avroType, v any) any {
	if br.kind == kindNull {
		return nil
	}
	return map[string]any{br.unionKey(): v}
}

// writerUnion resolves each branch of the writer's union on its own; a
// branch the reader cannot read fails only for values that use it.
func (b *resolveBuilder) writerUnion(path string, w, r *avroType) *resolver {
	byKey := make(map[string]*resolver, len(w.branches))
	var null *resolver
	for _, br := range w.branches {
		var res *resolver
		if r.kind == kindUnion {
			res = b.readerUnion(path, br, r)
		} else if br.kind == kindNull && r.kind != kindNull {
			res = b.fail(path, "writer's %s may be null; reader's %s may not", w.describe(), r.describe())
		} else {
			res = b.build(path, br, r)
		}
		if br.kind == kindNull {
			null = res
		} else {
			byKey[br.unionKey()] = res
		}
	}
	return &resolver{fn: func(v any) (any, error) {
		if v == nil {
			if null == nil {
				return nil, &ResolveError{Path: path, Reason: "null value for a union without null"}
			}
			return null.fn(nil)
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			return nil, nativeMismatch(path, v, "union value")
		}
		for k, x := range m {
			res := byKey[k]
			if res == nil {
				return nil, &ResolveError{Path: path, Reason: fmt.Sprintf("union branch %q is not in the writer's schema", k)}
			}
			return res.fn(x)
		}
		panic("unreachable")
	}}
}

func (b *resolveBuilder) record(path string, w, r *avroType) *resolver {
	if !sameName(w, r) {
		return b.fail(path, "writer's %s cannot be read as %s (names differ)", w.describe(), r.describe())
	}
	type fieldPlan struct {
		name   string
		from   bool      // the writer has the field
		source string    // its name in the writer's schema (an alias if renamed)
		res    *resolver // from the writer's field, or failing
		def    any       // native default, if !from
	}
	writerFields := make(map[string]*avroField, len(w.fields))
	for _, f := range w.fields {
		writerFields[f.name] = f
	}
	plans := make([]fieldPlan, 0, len(r.fields))
	for _, rf := range r.fields {
		fpath := path + "." + rf.name
		wf := writerFields[rf.name]
		for _, alias := range rf.aliases {
			if wf != nil {
				break
			}
			wf = writerFields[alias]
		}
		if wf != nil {
			plans = append(plans, fieldPlan{name: rf.name, from: true, source: wf.name, res: b.build(fpath, wf.typ, rf.typ)})
			continue
		}
		if !rf.hasDefault {
			plans = append(plans, fieldPlan{name: rf.name, from: true, res: b.fail(fpath, "field is missing in the writer's schema and has no default in the reader's")})
			continue
		}
		def, err := defaultNative(rf.typ, rf.def)
		if err != nil {
			plans = append(plans, fieldPlan{name: rf.name, from: true, res: b.fail(fpath, "invalid default: %v", err)})
			continue
		}
		plans = append(plans, fieldPlan{name: rf.name, def: def})
	}
	// Fields of the writer the reader lacks are dropped: goavro has already
	// read past them.
	return &resolver{fn: func(v any) (any, error) {
		in, ok := v.(map[string]any)
		if !ok {
			return nil, nativeMismatch(path, v, "record")
		}
		out := make(map[string]any, len(plans))
		for _, p := range plans {
			if !p.from {
				out[p.name] = cloneNative(p.def)
				continue
			}
			x, err := p.res.fn(in[p.source])
			if err != nil {
				return nil, err
			}
			out[p.name] = x
		}
		return out, nil
	}}
}

func (b *resolveBuilder) enum(path string, w, r *avroType) *resolver {
	if !sameName(w, r) {
		return b.fail(path, "writer's %s cannot be read as %s (names differ)", w.describe(), r.describe())
	}
	known := make(map[string]bool, len(r.symbols))
	for _, s := range r.symbols {
		known[s] = true
	}
	var missing []string
	for _, s := range w.symbols {
		if !known[s] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 && r.enumDef == nil {
		b.problems = append(b.problems, &ResolveError{Path: path, Reason: fmt.Sprintf(
			"writer's symbols %s are not in the reader's %s, which has no default", strings.Join(missing, ", "), r.describe())})
	}
	return &resolver{fn: func(v any) (any, error) {
		s, ok := v.(string)
		if !ok {
			return nil, nativeMismatch(path, v, "enum symbol")
		}
		if known[s] {
			return s, nil
		}
		if r.enumDef != nil {
			return *r.enumDef, nil
		}
		return nil, &ResolveError{Path: path, Reason: fmt.Sprintf("symbol %q is not in the reader's %s, which has no default", s, r.describe())}
	}}
}

// defaultNative converts a field default, as encoding/json decoded it from
// the .avsc file, to goavro's native form of type t. A union's default is a
// value of its first branch.
func defaultNative(t *avroType, def any) (any, error) {
	switch t.kind {
	case kindNull:
		if def != nil {
			return nil, fmt.Errorf("%v is not null", def)
		}
		return nil, nil
	case kindBoolean:
		v, ok := def.(bool)
		if !ok {
			return nil, fmt.Errorf("%v is not a boolean", def)
		}
		return v, nil
	case kindInt, kindLong:
		f, ok := def.(float64)
		if !ok || f != math.Trunc(f) {
			return nil, fmt.Errorf("%v is not an integer", def)
		}
		if t.kind == kindInt {
			if f < math.MinInt32 || f > math.MaxInt32 {
				return nil, fmt.Errorf("%v overflows an int", def)
			}
			return int32(f), nil
		}
		if f < math.MinInt64 || f >= math.MaxInt64 {
			return nil, fmt.Errorf("%v overflows a long", def)
		}
		return int64(f), nil
	case kindFloat, kindDouble:
		f, ok := def.(float64)
		if !ok {
			return nil, fmt.Errorf("%v is not a number", def)
		}
		if t.kind == kindFloat {
			return float32(f), nil
		}
		return f, nil
	case kindString:
		s, ok := def.(string)
		if !ok {
			return nil, fmt.Errorf("%v is not a string", def)
		}
		return s, nil
	case kindBytes, kindFixed:
		s, ok := def.(string)
		if !ok {
			return nil, fmt.Errorf("%v is not a string of bytes", def)
		}
		out := make([]byte, 0, len(s))
		for _, r := range s {
			if r > 0xFF {
				return nil, fmt.Errorf("%q has a code point above U+00FF", s)
			}
			out = append(out, byte(r))
		}
		if t.kind == kindFixed && len(out) != t.size {
			return nil, fmt.Errorf("%q is not %d bytes", s, t.size)
		}
		return out, nil
	case kindEnum:
		s, ok := def.(string)
		if !ok {
			return nil, fmt.Errorf("%v is not a symbol", def)
		}
		for _, sym := range t.symbols {
			if sym == s {
				return s, nil
			}
		}
		return nil, fmt.Errorf("%q is not a symbol of %s", s, t.describe())
	case kindArray:
		in, ok := def.([]any)
		if !ok {
			return nil, fmt.Errorf("%v is not an array", def)
		}
		out := make([]any, len(in))
		for i, x := range in {
			y, err := defaultNative(t.items, x)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = y
		}
		return out, nil
	case kindMap, kindRecord:
		in, ok := def.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%v is not an object", def)
		}
		out := make(map[string]any, len(in))
		if t.kind == kindMap {
			for k, x := range in {
				y, err := defaultNative(t.values, x)
				if err != nil {
					return nil, fmt.Errorf("%q: %w", k, err)
				}
				out[k] = y
			}
			return out, nil
		}
		for _, f := range t.fields {
			x, ok := in[f.name]
			if !ok {
				if !f.hasDefault {
					return nil, fmt.Errorf("field %q is missing", f.name)
				}
				x = f.def
			}
			y, err := defaultNative(f.typ, x)
			if err != nil {
				return nil, fmt.Errorf("field %q: %w", f.name, err)
			}
			out[f.name] = y
		}
		return out, nil
	case kindUnion:
		if len(t.branches) == 0 {
			return nil, errors.New("empty union")
		}
		first := t.branches[0]
		v, err := defaultNative(first, def)
		if err != nil {
			return nil, fmt.Errorf("a union's default must be a value of its first branch (%s): %w", first.describe(), err)
		}
		return wrapUnion(first, v), nil
	}
	return nil, fmt.Errorf("unsupported type %s", t.describe())
}

// cloneNative copies the mutable parts of a default, so that a caller who
// changes a decoded value does not change the default for the next one.
func cloneNative(v any) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = cloneNative(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = cloneNative(x)
		}
		return out
	case []byte:
		return append([]byte(nil), v...)
	}
	return v
}
