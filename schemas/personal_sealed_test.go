package schemas

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

type sealedRec struct {
	Who   string   `avro:"who"`
	N     int64    `avro:"n"`
	Alias *string  `avro:"alias"`
	Note  string   `avro:"note"`
	Tags  []string `avro:"tags"`
}

// TestEncodeSealed: EncodeSealed writes what Encode writes of a copy whose
// personal fields were replaced by seal's results, passes seal nothing but
// the personal values, leaves v unchanged, and reports seal's error.
func TestEncodeSealed(t *testing.T) {
	c, err := newCodec("r", []byte(`{"type":"record","name":"R","fields":[
		{"name":"who","type":"string","kcqrs.personal":true},
		{"name":"n","type":"long"},
		{"name":"alias","type":["null","string"],"kcqrs.personal":true},
		{"name":"note","type":"string"},
		{"name":"tags","type":{"type":"array","items":"string"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	seal := func(s string) (string, error) { return "sealed(" + strings.ToUpper(s) + ")", nil }
	alias := "Bo"
	for _, v := range []sealedRec{
		{Who: "Ann", N: 7, Alias: &alias, Note: "open", Tags: []string{"x"}},
		{Who: "", N: -1, Alias: nil, Note: ""},
	} {
		var seen []string
		got, ok, err := c.EncodeSealed(&v, func(s string) (string, error) { seen = append(seen, s); return seal(s) })
		if err != nil || !ok {
			t.Fatalf("EncodeSealed: ok %v, %v", ok, err)
		}
		cp := v
		cp.Who, _ = seal(v.Who)
		want := []string{v.Who}
		if v.Alias != nil {
			a, _ := seal(*v.Alias)
			cp.Alias = &a
			want = append(want, *v.Alias)
		}
		exp, err := c.Encode(cp)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, exp) {
			t.Fatalf("EncodeSealed %x, Encode of the sealed copy %x", got, exp)
		}
		if strings.Join(seen, ",") != strings.Join(want, ",") {
			t.Fatalf("seal saw %q, want %q", seen, want)
		}
		if v.Who != "" && bytes.Contains(got, []byte(v.Who)) {
			t.Fatal("the plaintext is in the encoding")
		}
		// By value too.
		got2, ok, err := c.EncodeSealed(v, seal)
		if err != nil || !ok || !bytes.Equal(got2, exp) {
			t.Fatalf("by value: ok %v, %v, equal %v", ok, err, bytes.Equal(got2, exp))
		}
	}
	if alias != "Bo" {
		t.Fatal("v changed")
	}
	boom := errors.New("boom")
	if _, ok, err := c.EncodeSealed(sealedRec{Who: "Ann"}, func(string) (string, error) { return "", boom }); !ok || !errors.Is(err, boom) {
		t.Fatalf("seal error: ok %v, %v", ok, err)
	}
	// A type without a compiled plan is not encoded.
	if _, ok, _ := c.EncodeSealed(map[string]any{"who": "Ann"}, seal); ok {
		t.Fatal("a map was encoded")
	}
}
