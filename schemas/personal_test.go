package schemas

import (
	"reflect"
	"strings"
	"testing"
)

func TestPersonalFieldsOfTheAccountExample(t *testing.T) {
	set, err := LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"OpenAccount", "AccountOpened", "Account"} {
		c, err := set.Codec(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.PersonalFields(); !reflect.DeepEqual(got, []string{"owner"}) {
			t.Errorf("%s: personal fields %v, want [owner]", name, got)
		}
	}
	c, _ := set.Codec("Deposit")
	if got := c.PersonalFields(); got != nil {
		t.Errorf("Deposit: personal fields %v, want none", got)
	}
}

func TestPersonalMarkDoesNotChangeTheFingerprint(t *testing.T) {
	plain := `{"type":"record","name":"P","fields":[{"name":"who","type":"string"},{"name":"n","type":"long"}]}`
	marked := `{"type":"record","name":"P","fields":[{"name":"who","type":"string","kcqrs.personal":true},{"name":"n","type":"long"}]}`
	a, err := newCodec("a", []byte(plain))
	if err != nil {
		t.Fatal(err)
	}
	b, err := newCodec("b", []byte(marked))
	if err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatalf("fingerprints differ: %x %x", a.Fingerprint(), b.Fingerprint())
	}
	type P struct {
		Who string
		N   int64
	}
	fs, err := b.PersonalGoFields(reflect.TypeOf(&P{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Name != "who" || fs[0].Index != 0 || fs[0].Pointer {
		t.Fatalf("PersonalGoFields = %+v", fs)
	}
	type Q struct {
		Who *string `avro:"who"`
	}
	c, err := newCodec("c", []byte(`{"type":"record","name":"Q","fields":[{"name":"who","type":["null","string"],"kcqrs.personal":true}]}`))
	if err != nil {
		t.Fatal(err)
	}
	fs, err = c.PersonalGoFields(reflect.TypeOf(Q{}))
	if err != nil || len(fs) != 1 || !fs[0].Pointer {
		t.Fatalf("PersonalGoFields = %+v, %v", fs, err)
	}
}

func TestPersonalMarkRefusedWhereItCannotBeHonoured(t *testing.T) {
	for _, tc := range []struct{ schema, want string }{
		{`{"type":"record","name":"P","fields":[{"name":"n","type":"long","kcqrs.personal":true}]}`, "only string"},
		{`{"type":"record","name":"P","fields":[{"name":"b","type":"bytes","kcqrs.personal":true}]}`, "only string"},
		{`{"type":"record","name":"P","fields":[{"name":"s","type":"string","kcqrs.personal":"yes"}]}`, "true or false"},
		{`{"type":"record","name":"P","fields":[{"name":"in","type":{"type":"record","name":"I","fields":[{"name":"s","type":"string","kcqrs.personal":true}]}}]}`, "nested"},
		{`{"type":"record","name":"P","fields":[{"name":"in","type":{"type":"array","items":{"type":"record","name":"I","fields":[{"name":"s","type":"string","kcqrs.personal":true}]}}}]}`, "nested"},
	} {
		_, err := newCodec("x", []byte(tc.schema))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one containing %q", tc.schema, err, tc.want)
		}
	}
}
