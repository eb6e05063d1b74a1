package schemas

import (
	"reflect"
	"strings"
	"testing"
)

func TestGeneralUnionBindErrors(t *testing.T) {
	c, err := newCodec("U.avsc", []byte(`{"type": "record", "name": "U", "fields": [
		{"name": "u", "type": ["null", "string", {"type": "record", "name": "R", "fields": []}, "long"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	type r struct{}
	type bad struct {
		S     string    `avro:"string"` // not a pointer
		Other *int64    `avro:"int"`    // no such branch
		R     *r        // fine
		Twice *struct{} `avro:"R"` // R again
	}
	type u struct {
		U bad `avro:"u"`
	}
	err = c.Bind(reflect.TypeFor[u]())
	for _, want := range []string{
		"Go field S of union struct schemas.bad is not a pointer",
		"Go field Other of schemas.bad matches no branch",
		"Go fields R and Twice both map to branch R",
		"branch string of Avro union [null, string, record R, long] has no Go field",
		"branch long of Avro union",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	type good struct {
		S    *string `avro:"string"`
		R    *r
		Long *int64
	}
	type ug struct {
		U good `avro:"u"`
	}
	if err := c.Bind(reflect.TypeFor[ug]()); err != nil {
		t.Fatal(err)
	}
	// JSON goes through goavro's native form: {"R": {}} and null.
	s := "x"
	for _, v := range []ug{{}, {U: good{S: &s}}, {U: good{R: &r{}}}} {
		js, err := c.EncodeJSON(v)
		if err != nil {
			t.Fatal(err)
		}
		var back ug
		if err := c.DecodeJSON(js, &back); err != nil || !reflect.DeepEqual(back, v) {
			t.Fatalf("JSON %s: %+v, %v", js, back, err)
		}
		data, err := c.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		checkDecodersAgree(t, c, reflect.TypeFor[ug](), data)
	}
}
