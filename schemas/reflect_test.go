package schemas

import (
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/wire"
)

// kindsSchema has a field of every kind the Go mapping supports.
const kindsSchema = `{"type":"record","name":"Kinds","namespace":"test","doc":"every kind","fields":[
	{"name":"b","type":"boolean"},
	{"name":"i8","type":"int"},
	{"name":"i","type":"int"},
	{"name":"i32","type":"int"},
	{"name":"i64int","type":"int"},
	{"name":"l","type":"long"},
	{"name":"lint","type":"long"},
	{"name":"f32","type":"float"},
	{"name":"f64float","type":"float"},
	{"name":"d","type":"double"},
	{"name":"s","type":"string"},
	{"name":"named","type":"string"},
	{"name":"color","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
	{"name":"raw","type":"bytes"},
	{"name":"namedBytes","type":"bytes"},
	{"name":"hash","type":{"type":"fixed","name":"Hash","size":4}},
	{"name":"hashSlice","type":"Hash"},
	{"name":"tags","type":{"type":"array","items":"string"}},
	{"name":"counts","type":{"type":"map","values":"long"}},
	{"name":"inner","type":{"type":"record","name":"Inner","fields":[{"name":"x","type":"int"}]}},
	{"name":"inners","type":{"type":"array","items":"Inner"}},
	{"name":"byName","type":{"type":"map","values":"test.Inner"}},
	{"name":"optString","type":["null","string"],"default":null},
	{"name":"optInner","type":["null","Inner"],"default":null},
	{"name":"optLast","type":["long","null"]},
	{"name":"empty","type":{"type":"record","name":"Empty","fields":[]}},
	{"name":"nested","type":{"type":"array","items":{"type":"array","items":"int"}}}
]}`

type (
	color string
	named string
	blob  []byte
	inner struct{ X int32 }
)

type kinds struct {
	B          bool
	I8         int8
	I          int
	I32        int32
	I64Int     int64 `avro:"i64int"`
	L          int64
	LInt       int `avro:"lint"`
	F32        float32
	F64Float   float64 `avro:"f64float"`
	D          float64
	S          string
	Named      named
	Color      color
	Raw        []byte
	NamedBytes blob
	Hash       [4]byte
	HashSlice  []byte
	Tags       []string
	Counts     map[string]int64
	Inner      inner
	Inners     []inner
	ByName     map[string]inner
	OptString  *string
	OptInner   *inner
	OptLast    *int64
	Empty      struct{}
	Nested     [][]int32

	ignored int    //nolint:unused // unexported fields are ignored
	Skipped string `avro:"-"`
}

func kindsCodec(t testing.TB) *Codec {
	t.Helper()
	s, err := Load(mapFS(map[string]string{"d/Kinds.avsc": kindsSchema}), "d")
	if err != nil {
		t.Fatal(err)
	}
	return mustCodec(t, s, "Kinds")
}

func fullKinds() kinds {
	str, long := "opt", int64(-9)
	return kinds{
		B: true, I8: -128, I: 1 << 30, I32: -5, I64Int: 7, L: -1 << 62, LInt: 1 << 40,
		F32: 1.25, F64Float: 1.5, D: 3.141592653589793,
		S: "héllo\x00\"\\", Named: "n", Color: "GREEN",
		Raw: []byte{0, 1, 0xFE, 0xFF, '"'}, NamedBytes: blob("b"),
		Hash: [4]byte{1, 2, 3, 4}, HashSlice: []byte{5, 6, 7, 8},
		Tags:   []string{"a", "b"},
		Counts: map[string]int64{"z": 1, "a": -2, "m": 3},
		Inner:  inner{X: 3}, Inners: []inner{{1}, {2}},
		ByName:    map[string]inner{"one": {1}},
		OptString: &str, OptInner: &inner{X: 9}, OptLast: &long,
		Nested: [][]int32{{1, 2}, {3}},
	}
}

func TestMappingOfEveryKind(t *testing.T) {
	c := kindsCodec(t)
	if err := c.Bind(reflect.TypeOf(kinds{})); err != nil {
		t.Fatal(err)
	}
	for _, want := range []kinds{
		fullKinds(),
		{Color: "RED", HashSlice: make([]byte, 4)}, // nil pointers, slices and maps
	} {
		data, err := c.Encode(want)
		if err != nil {
			t.Fatal(err)
		}
		got := kinds{ignored: 1, Skipped: "kept"}
		if err := c.Decode(data, &got); err != nil {
			t.Fatal(err)
		}
		if got.ignored != 1 || got.Skipped != "kept" {
			t.Errorf("Decode touched unmapped fields: %+v", got)
		}
		got.ignored, got.Skipped = 0, ""
		if !reflect.DeepEqual(got, want) {
			t.Errorf("binary round trip:\n got %+v\nwant %+v", got, want)
		}

		js, err := c.EncodeJSON(want)
		if err != nil {
			t.Fatal(err)
		}
		got = kinds{}
		if err := c.DecodeJSON(js, &got); err != nil {
			t.Fatalf("%v\n%s", err, js)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("JSON round trip via %s:\n got %+v\nwant %+v", js, got, want)
		}
	}

	js, _ := c.EncodeJSON(fullKinds())
	for _, want := range []string{
		`"counts":{"a":-2,"m":3,"z":1}`, // sorted keys
		`"optString":{"string":"opt"}`,
		`"optInner":{"test.Inner":{"x":9}}`,
		`"optLast":{"long":-9}`,
		`"empty":{}`,
	} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON lacks %s:\n%s", want, js)
		}
	}
	js, _ = c.EncodeJSON(kinds{Color: "RED", HashSlice: make([]byte, 4)})
	if !strings.Contains(string(js), `"optString":null`) {
		t.Errorf("JSON of a nil pointer: %s", js)
	}
}

func TestEncodeRangeChecks(t *testing.T) {
	c := kindsCodec(t)
	k := kinds{Color: "RED", I: 1 << 31}
	if _, err := c.Encode(k); err == nil || !strings.Contains(err.Error(), "i: 2147483648 does not fit Avro int") {
		t.Errorf("int overflow: err = %v", err)
	}
	k = kinds{Color: "RED", HashSlice: []byte{1}}
	if _, err := c.Encode(k); err == nil || !strings.Contains(err.Error(), "hashSlice") {
		t.Errorf("fixed of wrong size: err = %v", err)
	}
	k = kinds{Color: "RED", Inners: []inner{{1}, {2}}, ByName: map[string]inner{"k": {}}}
	k.I64Int = 1 << 40
	if _, err := c.Encode(k); err == nil || !strings.Contains(err.Error(), "i64int") {
		t.Errorf("int64 overflow of Avro int: err = %v", err)
	}
}

// badReply gets six things wrong about kcqrs.Reply.
type badReply struct {
	CommandID     string `avro:"commandId"`
	AggregateType int    `avro:"aggregateType"` // wrong kind
	AggregateID   string `avro:"aggregateId"`
	Status        int    `avro:"status"`  // an enum needs a string kind
	Version       int32  `avro:"version"` // a long does not fit int32
	Events        int32  `avro:"events"`
	Code          string `avro:"code"`
	// message is missing
	Duplicate bool   `avro:"duplicate"`
	Extra     string // no Avro field
	Tagged    string `avro:"nope"` // no Avro field of that name
}

func TestBindReportsEveryMismatch(t *testing.T) {
	c := mustCodec(t, allSets(t), "Reply")
	err := c.Bind(reflect.TypeOf(badReply{}))
	if err == nil {
		t.Fatal("no error")
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("not an errors.Join: %T", err)
	}
	if n := len(joined.Unwrap()); n != 6 {
		t.Errorf("%d errors, want 6:\n%v", n, err)
	}
	for _, want := range []string{
		"kcqrs.Reply ↔ schemas.badReply",
		"aggregateType: Go type int does not fit Avro string",
		"status: Go type int does not fit Avro enum kcqrs.ReplyStatus",
		"version: Go type int32 does not fit Avro long",
		"Avro field message has no Go field",
		"Go field Extra has no Avro field",
		`Go field Tagged (tag "nope") has no Avro field`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// The result is cached and Encode reports it.
	if err2 := c.Bind(reflect.TypeOf(&badReply{})); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second Bind: %v", err2)
	}
	if _, err := c.Encode(badReply{}); err == nil {
		t.Error("Encode of an unbindable type succeeded")
	}
}

func TestBindNestedPathsAndOddities(t *testing.T) {
	type badInnerReply struct {
		wire.Reply `avro:"-"`
		CommandID  string
		Status     []string `avro:"status"`
	}
	type badRecent struct {
		CommandID string
		Reply     badInnerReply
	}
	type badSnapshot struct {
		AggregateType, AggregateID string
		Version                    int64
		State                      string // bytes need []byte
		Recent                     []badRecent
	}
	err := mustCodec(t, allSets(t), "Snapshot").Bind(reflect.TypeOf(badSnapshot{}))
	for _, want := range []string{
		"state: Go type string does not fit Avro bytes",
		"recent[].reply.status: Go type []string does not fit Avro enum kcqrs.ReplyStatus",
		"recent[].reply: Avro field version has no Go field",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	c := mustCodec(t, allSets(t), "Deposit")
	if err := c.Bind(reflect.TypeOf(0)); err == nil || !strings.Contains(err.Error(), "not a struct") {
		t.Errorf("Bind(int): %v", err)
	}
	if err := c.Bind(nil); err == nil {
		t.Error("Bind(nil): no error")
	}
	type twoForOne struct {
		Amount  int64
		Amount2 int64 `avro:"amount"`
	}
	if err := c.Bind(reflect.TypeOf(twoForOne{})); err == nil || !strings.Contains(err.Error(), "both map to Avro field amount") {
		t.Errorf("two Go fields for one Avro field: %v", err)
	}

	s, err := Load(mapFS(map[string]string{"d/Odd.avsc": `{"type":"record","name":"Odd","fields":[
		{"name":"id","type":"string"},
		{"name":"ID","type":"string"},
		{"name":"either","type":["string","long"]},
		{"name":"amount","type":{"type":"fixed","name":"Amount","size":8,"logicalType":"decimal","precision":18,"scale":2}},
		{"name":"id2","type":{"type":"string","logicalType":"uuid"}},
		{"name":"nothing","type":"null"}]}`}), "d")
	if err != nil {
		t.Fatal(err)
	}
	type odd struct {
		Id      string
		Either  string
		Amount  [8]byte
		Id2     string
		Nothing *int
	}
	err = mustCodec(t, s, "Odd").Bind(reflect.TypeOf(odd{}))
	for _, want := range []string{
		"Go field Id matches Avro fields id, ID alike",
		"either: Go type string does not fit Avro union [string, long] (a union other than",
		"amount: Avro fixed Amount is not supported",
		"nothing: Avro null is not supported",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestUntaggedFieldsMatchIgnoringCase(t *testing.T) {
	type reply struct {
		COMMANDID, AggregateType, Aggregateid string
		Status                                wire.Status
		Version                               int64
		Events                                int32
		Code, Message                         string
		Duplicate                             bool
	}
	c := mustCodec(t, allSets(t), "Reply")
	if err := c.Bind(reflect.TypeOf(reply{})); err != nil {
		t.Fatal(err)
	}
	// The same bytes as the tagged wire.Reply.
	w := sampleReply()
	r := reply{w.CommandID, w.AggregateType, w.AggregateID, w.Status, w.Version, w.Events, w.Code, w.Message, w.Duplicate}
	a, _ := c.Encode(w)
	b, err := c.Encode(r)
	if err != nil || string(a) != string(b) {
		t.Fatalf("untagged struct encodes differently: %v", err)
	}
}

// FromNative must reject every native value of the wrong type without
// panicking.
func TestFromNativeIsRobust(t *testing.T) {
	c := kindsCodec(t)
	valid, err := c.ToNative(fullKinds())
	if err != nil {
		t.Fatal(err)
	}
	var back kinds
	if err := c.FromNative(valid, &back); err != nil || !reflect.DeepEqual(back, fullKinds()) {
		t.Fatalf("FromNative(ToNative(v)) = %+v, %v", back, err)
	}
	junk := []any{nil, true, "x", int32(300), int64(1 << 40), 1, float32(1), float64(1.5),
		[]byte("xyzw"), []any{"x", int32(1)}, map[string]any{"x": int32(1)}, map[string]any{}, struct{}{}}
	for field := range valid.(map[string]any) {
		for _, j := range junk {
			m := maps.Clone(valid.(map[string]any))
			m[field] = j
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("field %s = %#v: panic %v", field, j, r)
					}
				}()
				_ = c.FromNative(m, new(kinds))
			}()
		}
		m := maps.Clone(valid.(map[string]any))
		delete(m, field)
		if err := c.FromNative(m, new(kinds)); err == nil || !strings.Contains(err.Error(), field+": missing") {
			t.Errorf("without %s: err = %v", field, err)
		}
	}
	for _, tc := range []struct {
		field string
		value any
		want  string
	}{
		{"i8", int32(300), "i8: 300 overflows Go int8"},
		{"b", "true", "b: native value of type string where boolean was expected"},
		{"optString", map[string]any{"long": int64(1)}, "optString: union value is not a string"},
		{"optInner", map[string]any{"test.Inner": map[string]any{"x": "1"}}, "optInner.x:"},
		{"inners", []any{map[string]any{"x": int32(1)}, "no"}, "inners[1]:"},
		{"counts", map[string]any{"k": "v"}, `counts["k"]:`},
		{"hash", []byte{1, 2}, "hash: 2 bytes for a [4]byte"},
	} {
		m := maps.Clone(valid.(map[string]any))
		m[tc.field] = tc.value
		if err := c.FromNative(m, new(kinds)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s = %#v: err = %v, want %q", tc.field, tc.value, err, tc.want)
		}
	}
	for _, n := range []any{nil, "x", map[string]int{}} {
		if err := c.FromNative(n, new(kinds)); err == nil {
			t.Errorf("FromNative(%#v): no error", n)
		}
	}
	if err := c.FromNative(valid, kinds{}); err == nil {
		t.Error("FromNative into a non-pointer: no error")
	}
	var target *FingerprintError
	if errors.As(c.FromNative(nil, new(kinds)), &target) {
		t.Error("unexpected FingerprintError")
	}
}

type listNode struct {
	Value int64
	Next  *listNode
}

func TestRecursiveTypes(t *testing.T) {
	s, err := Load(mapFS(map[string]string{"d/List.avsc": `{"type":"record","name":"List","namespace":"x","fields":[
		{"name":"value","type":"long"},
		{"name":"next","type":["null","x.List"],"default":null}]}`}), "d")
	if err != nil {
		t.Fatal(err)
	}
	c := mustCodec(t, s, "List")
	want := listNode{1, &listNode{2, &listNode{3, nil}}}
	data, err := c.Encode(want)
	if err != nil {
		t.Fatal(err)
	}
	var got listNode
	if err := c.Decode(data, &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("binary: %+v, %v", got, err)
	}
	js, err := c.EncodeJSON(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(js) != `{"value":1,"next":{"x.List":{"value":2,"next":{"x.List":{"value":3,"next":null}}}}}` {
		t.Errorf("JSON: %s", js)
	}
	got = listNode{}
	if err := c.DecodeJSON(js, &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("JSON: %+v, %v", got, err)
	}
	// Nesting deeper than the pre-scan allows is refused, not a stack overflow.
	deep := append([]byte{}, c.header[:]...)
	for range maxDepth + 10 {
		deep = append(deep, 2, 2) // value 1, then branch 1 (x.List)
	}
	deep = append(deep, 2, 0)
	if err := c.Decode(deep, &got); err == nil || !strings.Contains(err.Error(), "nested deeper") || len(err.Error()) > 300 {
		t.Errorf("deep list: err = %v", err)
	}
}
