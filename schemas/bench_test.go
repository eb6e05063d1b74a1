package schemas

import (
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
