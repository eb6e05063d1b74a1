package schemas

import (
	"reflect"
	"strings"
	"testing"
)

// record wraps field declarations in a record named R, the shape every rule
// test uses: writer and reader differ only in the fields.
func record(fields string) string {
	return `{"type":"record","name":"R","namespace":"t","fields":[` + fields + `]}`
}

// resolveBytes encodes native with the writer's schema through goavro, then
// decodes and resolves it as the reader's, the way Codec.Decode does.
func resolveBytes(t *testing.T, writer, reader string, native map[string]any) (any, []error, error) {
	t.Helper()
	w, err := newCodec("writer.avsc", []byte(writer))
	if err != nil {
		t.Fatalf("writer: %v", err)
	}
	r, err := newCodec("reader.avsc", []byte(reader))
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	body, err := w.avro.BinaryFromNative(w.header[:], native)
	if err != nil {
		t.Fatalf("encode with writer: %v", err)
	}
	back, err := w.DecodeNative(body)
	if err != nil {
		t.Fatalf("decode with writer: %v", err)
	}
	_, problems := r.resolverFrom(w)
	out, err := r.Resolve(w, back)
	if err == nil {
		// The reader's own codec must accept the result: resolution gives
		// the reader's native form exactly.
		if _, err := r.avro.BinaryFromNative(nil, out); err != nil {
			t.Fatalf("reader cannot encode the resolved value %#v: %v", out, err)
		}
	}
	return out, problems, err
}

// TestResolveRules has one case per rule of the Avro specification's schema
// resolution, each with what it must give, and the failures with their
// messages.
func TestResolveRules(t *testing.T) {
	cases := []struct {
		name           string
		writer, reader string
		in             map[string]any
		want           map[string]any
		problem        string // in the static check ("" = compatible)
		err            string // when resolving this value
	}{
		{name: "same schema",
			writer: record(`{"name":"a","type":"long"}`), reader: record(`{"name":"a","type":"long"}`),
			in: map[string]any{"a": int64(7)}, want: map[string]any{"a": int64(7)}},
		{name: "field added with default",
			writer: record(`{"name":"a","type":"long"}`),
			reader: record(`{"name":"a","type":"long"},{"name":"b","type":"string","default":"x"},{"name":"c","type":["null","int"],"default":null},{"name":"d","type":{"type":"array","items":"int"},"default":[1,2]}`),
			in:     map[string]any{"a": int64(7)},
			want:   map[string]any{"a": int64(7), "b": "x", "c": nil, "d": []any{int32(1), int32(2)}}},
		{name: "field added without default fails",
			writer: record(`{"name":"a","type":"long"}`), reader: record(`{"name":"a","type":"long"},{"name":"b","type":"string"}`),
			in:      map[string]any{"a": int64(7)},
			problem: "cannot resolve R.b: field is missing in the writer's schema and has no default in the reader's",
			err:     "cannot resolve R.b: field is missing"},
		{name: "field removed is ignored",
			writer: record(`{"name":"a","type":"long"},{"name":"gone","type":{"type":"map","values":"string"}}`), reader: record(`{"name":"a","type":"long"}`),
			in: map[string]any{"a": int64(7), "gone": map[string]any{"k": "v"}}, want: map[string]any{"a": int64(7)}},
		{name: "fields reordered",
			writer: record(`{"name":"a","type":"long"},{"name":"b","type":"string"}`), reader: record(`{"name":"b","type":"string"},{"name":"a","type":"long"}`),
			in: map[string]any{"a": int64(7), "b": "x"}, want: map[string]any{"a": int64(7), "b": "x"}},
		{name: "int to long, float, double",
			writer: record(`{"name":"a","type":"int"},{"name":"b","type":"int"},{"name":"c","type":"int"}`),
			reader: record(`{"name":"a","type":"long"},{"name":"b","type":"float"},{"name":"c","type":"double"}`),
			in:     map[string]any{"a": int32(-3), "b": int32(4), "c": int32(5)},
			want:   map[string]any{"a": int64(-3), "b": float32(4), "c": float64(5)}},
		{name: "long to float, double; float to double",
			writer: record(`{"name":"a","type":"long"},{"name":"b","type":"long"},{"name":"c","type":"float"}`),
			reader: record(`{"name":"a","type":"float"},{"name":"b","type":"double"},{"name":"c","type":"double"}`),
			in:     map[string]any{"a": int64(1 << 40), "b": int64(-9), "c": float32(1.5)},
			want:   map[string]any{"a": float32(1 << 40), "b": float64(-9), "c": float64(1.5)}},
		{name: "narrowing long to int fails",
			writer: record(`{"name":"a","type":"long"}`), reader: record(`{"name":"a","type":"int"}`),
			in:      map[string]any{"a": int64(1)},
			problem: "cannot resolve R.a: writer's long cannot be read as int", err: "writer's long cannot be read as int"},
		{name: "string to bytes and back",
			writer: record(`{"name":"a","type":"string"},{"name":"b","type":"bytes"}`), reader: record(`{"name":"a","type":"bytes"},{"name":"b","type":"string"}`),
			in: map[string]any{"a": "hé", "b": []byte("yo")}, want: map[string]any{"a": []byte("hé"), "b": "yo"}},
		{name: "enum symbol known",
			writer: record(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}`),
			reader: record(`{"name":"e","type":{"type":"enum","name":"E","symbols":["B","A","C"]}}`),
			in:     map[string]any{"e": "A"}, want: map[string]any{"e": "A"}},
		{name: "enum symbol unknown uses the reader's default",
			writer: record(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","OLD"]}}`),
			reader: record(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","UNKNOWN"],"default":"UNKNOWN"}}`),
			in:     map[string]any{"e": "OLD"}, want: map[string]any{"e": "UNKNOWN"}},
		{name: "enum symbol unknown without default fails",
			writer:  record(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","OLD"]}}`),
			reader:  record(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}`),
			in:      map[string]any{"e": "OLD"},
			problem: "cannot resolve R.e: writer's symbols OLD are not in the reader's enum t.E, which has no default",
			err:     `symbol "OLD" is not in the reader's enum t.E`},
		{name: "enum unknown symbol not used still resolves",
			writer: record(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","OLD"]}}`),
			reader: record(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}`),
			in:     map[string]any{"e": "A"}, want: map[string]any{"e": "A"},
			problem: "writer's symbols OLD are not in the reader's"},
		{name: "reader union, writer not",
			writer: record(`{"name":"a","type":"int"},{"name":"b","type":"string"}`),
			reader: record(`{"name":"a","type":["null","long"]},{"name":"b","type":["null","string"]}`),
			in:     map[string]any{"a": int32(3), "b": "x"},
			want:   map[string]any{"a": map[string]any{"long": int64(3)}, "b": map[string]any{"string": "x"}}},
		{name: "reader union prefers the exact branch to a promotion",
			writer: record(`{"name":"a","type":"int"}`), reader: record(`{"name":"a","type":["long","int"]}`),
			in: map[string]any{"a": int32(3)}, want: map[string]any{"a": map[string]any{"int": int32(3)}}},
		{name: "writer union, reader not",
			writer: record(`{"name":"a","type":["int","string"]}`), reader: record(`{"name":"a","type":"long"}`),
			in: map[string]any{"a": map[string]any{"int": int32(5)}}, want: map[string]any{"a": int64(5)},
			problem: "writer's string cannot be read as long"},
		{name: "writer union branch the reader lacks fails when used",
			writer: record(`{"name":"a","type":["int","string"]}`), reader: record(`{"name":"a","type":"long"}`),
			in:      map[string]any{"a": map[string]any{"string": "x"}},
			problem: "writer's string cannot be read as long", err: "cannot resolve R.a: writer's string cannot be read as long"},
		{name: "writer null into a non-null reader fails",
			writer: record(`{"name":"a","type":["null","long"]}`), reader: record(`{"name":"a","type":"long"}`),
			in:      map[string]any{"a": nil},
			problem: "may be null", err: "writer's union [null, long] may be null; reader's long may not"},
		{name: "both unions",
			writer: record(`{"name":"a","type":["null","int","string"]}`), reader: record(`{"name":"a","type":["string","null","double"]}`),
			in: map[string]any{"a": map[string]any{"int": int32(2)}}, want: map[string]any{"a": map[string]any{"double": float64(2)}}},
		{name: "both unions, null",
			writer: record(`{"name":"a","type":["null","int"]}`), reader: record(`{"name":"a","type":["null","long"]}`),
			in: map[string]any{"a": nil}, want: map[string]any{"a": nil}},
		{name: "nested record, array and map",
			writer: record(`{"name":"xs","type":{"type":"array","items":{"type":"record","name":"X","fields":[{"name":"n","type":"int"},{"name":"old","type":"string"}]}}},{"name":"m","type":{"type":"map","values":"int"}}`),
			reader: record(`{"name":"xs","type":{"type":"array","items":{"type":"record","name":"X","fields":[{"name":"n","type":"long"},{"name":"new","type":"boolean","default":true}]}}},{"name":"m","type":{"type":"map","values":"double"}}`),
			in:     map[string]any{"xs": []any{map[string]any{"n": int32(1), "old": "o"}}, "m": map[string]any{"k": int32(4)}},
			want:   map[string]any{"xs": []any{map[string]any{"n": int64(1), "new": true}}, "m": map[string]any{"k": float64(4)}}},
		{name: "nested record renamed fails",
			writer:  record(`{"name":"x","type":{"type":"record","name":"X","fields":[]}}`),
			reader:  record(`{"name":"x","type":{"type":"record","name":"Y","fields":[]}}`),
			in:      map[string]any{"x": map[string]any{}},
			problem: "cannot resolve R.x: writer's record t.X cannot be read as record t.Y (names differ)", err: "names differ"},
		{name: "namespace change is allowed (unqualified names match)",
			writer: record(`{"name":"x","type":{"type":"record","name":"X","namespace":"old","fields":[{"name":"n","type":"int"}]}}`),
			reader: record(`{"name":"x","type":{"type":"record","name":"X","namespace":"new","fields":[{"name":"n","type":"int"}]}}`),
			in:     map[string]any{"x": map[string]any{"n": int32(1)}}, want: map[string]any{"x": map[string]any{"n": int32(1)}}},
		{name: "field renamed, the old name as an alias",
			writer: record(`{"name":"amt","type":"int"}`), reader: record(`{"name":"amount","type":"long","aliases":["amt"]}`),
			in: map[string]any{"amt": int32(9)}, want: map[string]any{"amount": int64(9)}},
		{name: "field renamed without an alias fails",
			writer: record(`{"name":"amt","type":"int"}`), reader: record(`{"name":"amount","type":"long"}`),
			in:      map[string]any{"amt": int32(9)},
			problem: "cannot resolve R.amount: field is missing in the writer's schema", err: "R.amount: field is missing"},
		{name: "nested record and enum renamed, the old names as aliases",
			writer: record(`{"name":"x","type":{"type":"record","name":"Old","fields":[{"name":"e","type":{"type":"enum","name":"E0","symbols":["A"]}}]}}`),
			reader: record(`{"name":"x","type":{"type":"record","name":"New","aliases":["t.Old"],"fields":[{"name":"e","type":{"type":"enum","name":"E1","aliases":["E0"],"symbols":["A"]}}]}}`),
			in:     map[string]any{"x": map[string]any{"e": "A"}}, want: map[string]any{"x": map[string]any{"e": "A"}}},
		{name: "fixed size change fails",
			writer: record(`{"name":"f","type":{"type":"fixed","name":"F","size":2}}`), reader: record(`{"name":"f","type":{"type":"fixed","name":"F","size":3}}`),
			in:      map[string]any{"f": []byte("ab")},
			problem: "writer's fixed t.F has size 2, reader's 3", err: "has size 2"},
		{name: "recursive record",
			writer: record(`{"name":"next","type":["null","t.R"]},{"name":"v","type":"int"}`),
			reader: record(`{"name":"next","type":["null","t.R"]},{"name":"v","type":"long"},{"name":"w","type":"int","default":0}`),
			in:     map[string]any{"v": int32(1), "next": map[string]any{"t.R": map[string]any{"v": int32(2), "next": nil}}},
			want:   map[string]any{"v": int64(1), "w": int32(0), "next": map[string]any{"t.R": map[string]any{"v": int64(2), "w": int32(0), "next": nil}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, problems, err := resolveBytes(t, tc.writer, tc.reader, tc.in)
			var all []string
			for _, p := range problems {
				all = append(all, p.Error())
			}
			joined := strings.Join(all, "\n")
			if tc.problem == "" && len(problems) > 0 {
				t.Errorf("unexpected incompatibility: %s", joined)
			}
			if tc.problem != "" && !strings.Contains(joined, tc.problem) {
				t.Errorf("problems %q do not mention %q", joined, tc.problem)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

// TestResolveDefaultNotShared: a default handed out twice is two copies, so
// a caller that changes one decoded value does not change the next.
func TestResolveDefaultNotShared(t *testing.T) {
	w, _ := newCodec("w", []byte(record(`{"name":"a","type":"int"}`)))
	r, _ := newCodec("r", []byte(record(`{"name":"a","type":"int"},{"name":"xs","type":{"type":"array","items":"int"},"default":[1]}`)))
	first, err := r.Resolve(w, map[string]any{"a": int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	first.(map[string]any)["xs"].([]any)[0] = int32(99)
	second, _ := r.Resolve(w, map[string]any{"a": int32(1)})
	if got := second.(map[string]any)["xs"].([]any)[0]; got != int32(1) {
		t.Fatalf("default changed by an earlier caller: %v", got)
	}
}

// TestDefaultNative: goavro validates defaults when it parses a schema, but
// the resolver converts them itself; a default it cannot convert is an
// error naming the problem, never a panic or a wrong value.
func TestDefaultNative(t *testing.T) {
	parse := func(schema string) *avroType {
		t.Helper()
		typ, _, err := parseSchema([]byte(schema))
		if err != nil {
			t.Fatal(err)
		}
		return typ
	}
	cases := []struct {
		schema string
		def    any
		want   any
		err    string
	}{
		{`"int"`, 3.0, int32(3), ""},
		{`"int"`, 3.5, nil, "not an integer"},
		{`"int"`, 1e10, nil, "overflows an int"},
		{`"long"`, 1e19, nil, "overflows a long"},
		{`"bytes"`, "\u00ff", []byte{0xff}, ""},
		{`"bytes"`, "\u0100", nil, "above U+00FF"},
		{`{"type":"fixed","name":"F","size":2}`, "a", nil, "is not 2 bytes"},
		{`{"type":"enum","name":"E","symbols":["A"]}`, "B", nil, "not a symbol"},
		{`["null","int"]`, 1.0, nil, "first branch (null)"},
		{`["int","null"]`, 1.0, map[string]any{"int": int32(1)}, ""},
		{`{"type":"record","name":"X","fields":[{"name":"a","type":"int"}]}`, map[string]any{}, nil, `field "a" is missing`},
		{`{"type":"map","values":"float"}`, map[string]any{"k": 1.0}, map[string]any{"k": float32(1)}, ""},
	}
	for _, tc := range cases {
		got, err := defaultNative(parse(tc.schema), tc.def)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s default %v: err = %v, want %q", tc.schema, tc.def, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s default %v = %#v, %v; want %#v", tc.schema, tc.def, got, err, tc.want)
		}
	}
}
