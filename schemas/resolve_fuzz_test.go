package schemas

import (
	"testing"
)

// The fuzzed writer and reader: every resolution rule is somewhere in this
// pair (promotions, string/bytes, enum with a default, unions on both sides,
// a field added with a default, a removed field, nested records in arrays
// and maps, recursion).
const (
	fuzzWriter = `{"type":"record","name":"F","namespace":"fz","fields":[
	  {"name":"i","type":"int"},
	  {"name":"l","type":"long"},
	  {"name":"f","type":"float"},
	  {"name":"s","type":"string"},
	  {"name":"b","type":"bytes"},
	  {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","GONE"]}},
	  {"name":"u","type":["null","int","string"]},
	  {"name":"p","type":"int"},
	  {"name":"removed","type":{"type":"array","items":"string"}},
	  {"name":"xs","type":{"type":"array","items":{"type":"record","name":"X","fields":[{"name":"n","type":"int"}]}}},
	  {"name":"m","type":{"type":"map","values":["null","float"]}},
	  {"name":"next","type":["null","fz.F"]}
	]}`
	fuzzReader = `{"type":"record","name":"F","namespace":"fz","fields":[
	  {"name":"next","type":["null","fz.F"]},
	  {"name":"i","type":"double"},
	  {"name":"l","type":"float"},
	  {"name":"f","type":"double"},
	  {"name":"s","type":"bytes"},
	  {"name":"b","type":"string"},
	  {"name":"e","type":{"type":"enum","name":"E","symbols":["B","A","OTHER"],"default":"OTHER"}},
	  {"name":"u","type":["string","null","long"]},
	  {"name":"p","type":["null","long"]},
	  {"name":"added","type":{"type":"map","values":"int"},"default":{"k":1}},
	  {"name":"xs","type":{"type":"array","items":{"type":"record","name":"X","fields":[{"name":"n","type":"long"},{"name":"tag","type":"string","default":""}]}}},
	  {"name":"m","type":{"type":"map","values":["null","double"]}}
	]}`
)

func fuzzResolveCodecs(t testing.TB) (w, r *Codec) {
	w, err := newCodec("writer.avsc", []byte(fuzzWriter))
	if err != nil {
		t.Fatal(err)
	}
	r, err = newCodec("reader.avsc", []byte(fuzzReader))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CanRead(w); err != nil {
		t.Fatalf("the fuzz pair must be compatible: %v", err)
	}
	return w, r
}

// FuzzResolve feeds arbitrary bytes, behind the writer's header, through
// decoding with the writer's schema and resolution to the reader's: no input
// may panic, and whatever resolves must be a valid value of the reader's
// schema (its goavro codec encodes it, and the bytes decode again).
func FuzzResolve(f *testing.F) {
	w, r := fuzzResolveCodecs(f)
	seeds := []map[string]any{
		{"i": int32(1), "l": int64(-2), "f": float32(0.5), "s": "s", "b": []byte{0xff}, "e": "GONE",
			"u": nil, "p": int32(3), "removed": []any{"x"}, "xs": []any{map[string]any{"n": int32(4)}},
			"m": map[string]any{"a": nil, "b": map[string]any{"float": float32(1)}}, "next": nil},
		{"i": int32(0), "l": int64(0), "f": float32(0), "s": "", "b": []byte{}, "e": "A",
			"u": map[string]any{"string": "u"}, "p": int32(0), "removed": []any{}, "xs": []any{}, "m": map[string]any{},
			"next": map[string]any{"fz.F": map[string]any{"i": int32(9), "l": int64(9), "f": float32(9), "s": "n", "b": []byte("n"),
				"e": "B", "u": map[string]any{"int": int32(7)}, "p": int32(1), "removed": []any{}, "xs": []any{}, "m": map[string]any{}, "next": nil}}},
	}
	for _, s := range seeds {
		body, err := w.avro.BinaryFromNative(nil, s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
		f.Add(body[:len(body)/2])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		data := append(w.header[:HeaderLen:HeaderLen], body...)
		native, err := w.DecodeNative(data)
		if err != nil {
			return
		}
		out, err := r.Resolve(w, native)
		if err != nil {
			t.Fatalf("compatible schemas, decodable data, but resolution failed: %v", err)
		}
		enc, err := r.avro.BinaryFromNative(r.header[:], out)
		if err != nil {
			t.Fatalf("resolved value %#v is not a valid reader value: %v", out, err)
		}
		if _, err := r.DecodeNative(enc); err != nil {
			t.Fatalf("re-encoded reader value does not decode: %v", err)
		}
	})
}
