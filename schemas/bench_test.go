package schemas

import (
	"os"
	"reflect"
	"testing"

	"github.com/kcqrs/kcqrs/wire"
)

// A snapshot with a dedupe window of 20 recent commands.

func BenchmarkEncodeSnapshot(b *testing.B) {
	c := mustCodec(b, allSets(b), "Snapshot")
	s := sampleSnapshot(20)
	if err := c.Bind(reflect.TypeOf(s)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Encode(&s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeSnapshot(b *testing.B) {
	c := mustCodec(b, allSets(b), "Snapshot")
	data, err := c.Encode(sampleSnapshot(20))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var s wire.Snapshot
		if err := c.Decode(data, &s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeJSONSnapshot(b *testing.B) {
	c := mustCodec(b, allSets(b), "Snapshot")
	s := sampleSnapshot(20)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.EncodeJSON(&s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeJSONSnapshot(b *testing.B) {
	c := mustCodec(b, allSets(b), "Snapshot")
	js, err := c.EncodeJSON(sampleSnapshot(20))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(js)))
	b.ReportAllocs()
	for b.Loop() {
		var s wire.Snapshot
		if err := c.DecodeJSON(js, &s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeResolved compares decoding a state written with the
// current schema and one written with version 1 (resolved: a field added
// with a default), the cost old data pays.
func BenchmarkDecodeResolved(b *testing.B) {
	set, err := Load(os.DirFS("testdata"), "accountv2")
	if err != nil {
		b.Fatal(err)
	}
	vs, _ := set.Versions("Account")
	old, cur := vs[0], vs[1]
	native := map[string]any{"status": "open", "owner": "owner", "currency": "EUR", "balance": int64(12345)}
	v1, _ := old.avro.BinaryFromNative(old.header[:], native)
	native["channel"] = "web"
	v2, _ := cur.avro.BinaryFromNative(cur.header[:], native)
	for _, bc := range []struct {
		name string
		data []byte
	}{{"current", v2}, {"v1-resolved", v1}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var a accountV2
			for b.Loop() {
				if err := cur.Decode(bc.data, &a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
