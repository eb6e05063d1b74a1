package schemas

import (
	"reflect"
	"testing"

	"github.com/kcqrs/kcqrs/wire"
)

// fuzzTargets are the records decoded from untrusted input: replies come
// from other workers, snapshots from the changelog, events from the events
// topic.
func fuzzTargets(t testing.TB) []struct {
	c   *Codec
	new func() any
} {
	env, err := LoadEnvelopes()
	if err != nil {
		t.Fatal(err)
	}
	return []struct {
		c   *Codec
		new func() any
	}{
		{mustCodec(t, env, "Reply"), func() any { return new(wire.Reply) }},
		{mustCodec(t, env, "Snapshot"), func() any { return new(wire.Snapshot) }},
		{mustCodec(t, env, "Event"), func() any { return new(wire.Event) }},
	}
}

func FuzzDecode(f *testing.F) {
	targets := fuzzTargets(f)
	for _, v := range []any{sampleReply(), sampleSnapshot(0), sampleSnapshot(1), sampleSnapshot(5), samples()[1].value} {
		for _, tg := range targets {
			if data, err := tg.c.Encode(v); err == nil {
				f.Add(data)
				f.Add(data[HeaderLen:]) // the body alone: the fuzz function adds each header
				f.Add(data[:len(data)/2])
			}
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0xC3, 0x01})

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, tg := range targets {
			// As given, and behind the codec's own header so that the fuzzer
			// reaches the decoder without guessing a fingerprint.
			withHeader := append(tg.c.header[:HeaderLen:HeaderLen], data...)
			for _, in := range [][]byte{data, withHeader} {
				v := tg.new()
				if err := tg.c.Decode(in, v); err != nil {
					continue
				}
				// Whatever decodes re-encodes to bytes that decode the same.
				again, err := tg.c.Encode(v)
				if err != nil {
					t.Fatalf("%s: decoded %+v but cannot encode it: %v", tg.c.Name(), v, err)
				}
				v2 := tg.new()
				if err := tg.c.Decode(again, v2); err != nil {
					t.Fatalf("%s: re-encoded value does not decode: %v", tg.c.Name(), err)
				}
				if !reflect.DeepEqual(v, v2) {
					t.Fatalf("%s: round trip changed the value:\n%+v\n%+v", tg.c.Name(), v, v2)
				}
			}
		}
	})
}

func FuzzDecodeJSON(f *testing.F) {
	targets := fuzzTargets(f)
	for _, v := range []any{sampleReply(), sampleSnapshot(0), sampleSnapshot(2), samples()[1].value} {
		for _, tg := range targets {
			if js, err := tg.c.EncodeJSON(v); err == nil {
				f.Add(js)
				f.Add(js[:len(js)/2])
			}
		}
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"commandId":"c","aggregateType":"t","aggregateId":"i","status":"ACCEPTED","version":3,"events":1,"code":"","message":""}`))
	f.Add([]byte(`{"payload":"\u00ff\u0000"}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, tg := range targets {
			v := tg.new()
			if err := tg.c.DecodeJSON(data, v); err != nil {
				continue
			}
			js, err := tg.c.EncodeJSON(v)
			if err != nil {
				t.Fatalf("%s: decoded %+v but cannot encode it: %v", tg.c.Name(), v, err)
			}
			v2 := tg.new()
			if err := tg.c.DecodeJSON(js, v2); err != nil {
				t.Fatalf("%s: re-encoded JSON %s does not decode: %v", tg.c.Name(), js, err)
			}
			if !reflect.DeepEqual(v, v2) {
				t.Fatalf("%s: round trip through %s changed the value:\n%+v\n%+v", tg.c.Name(), js, v, v2)
			}
		}
	})
}
