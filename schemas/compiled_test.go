package schemas

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/linkedin/goavro/v2"
)

// The compiled codecs are checked against goavro, the oracle: the same bytes
// as goavro's BinaryFromNative for random values of every record type, and
// the same decoded value (or an error on both paths) for any bytes.

type kLabel string
type kColor string

type kInner struct {
	A string `avro:"a"`
	N int64  `avro:"n"`
}

type kNode struct {
	V    int32  `avro:"v"`
	Next *kNode `avro:"next"`
}

// kChoice, kEither and kSmall are general unions: one pointer per branch.
type kChoice struct {
	S     *string  `avro:"string"`
	Inner *kInner  // by the record's short name
	Long  *int64   // by the type name
	Ints  *[]int32 `avro:"array"`
	Four  *[4]byte `avro:"kcqrs.test.Four"` // by the full name
	Skip  string   `avro:"-"`
}

type kEither struct {
	Long  *int64
	Color *kColor
}

type kSmall struct {
	Color  *kColor
	Double *float64
}

type kitchen struct {
	B       bool              `avro:"b"`
	I8      int8              `avro:"i8"`
	I16     int16             `avro:"i16"`
	I32     int32             `avro:"i32"`
	I64i    int64             `avro:"i64i"`
	Ii      int               `avro:"ii"`
	L       int64             `avro:"l"`
	Li      int               `avro:"li"`
	F32     float32           `avro:"f32"`
	F64f    float64           `avro:"f64f"`
	D       float64           `avro:"d"`
	S       string            `avro:"s"`
	Named   kLabel            `avro:"named"`
	UUID    string            `avro:"uuid"`
	Bs      []byte            `avro:"bs"`
	Fx      [4]byte           `avro:"fx"`
	Fxs     []byte            `avro:"fxs"`
	E       kColor            `avro:"e"`
	Arr     []int64           `avro:"arr"`
	Recs    []kInner          `avro:"recs"`
	M       map[string]int32  `avro:"m"`
	MR      map[kLabel]kInner `avro:"mr"`
	Opt     *string           `avro:"opt"`
	OptR    *kInner           `avro:"optr"`
	Nest    kInner            `avro:"nest"`
	Empty   struct{}          `avro:"empty"`
	Empties []struct{}        `avro:"empties"`
	Colors  []kColor          `avro:"colors"`
	List    *kNode            `avro:"list"`
	Choice  kChoice           `avro:"choice"`
	Either  kEither           `avro:"either"`
	Choices []kSmall          `avro:"choices"`
	Skip    string            `avro:"-"`
	private int
}

func kitchenCodec(t testing.TB) *Codec {
	t.Helper()
	set, err := Load(os.DirFS("testdata"), "compiled")
	if err != nil {
		t.Fatal(err)
	}
	return mustCodec(t, set, "Kitchen")
}

// compiledTargets are every record of the project's schemas with its Go type
// (from samples()), and the kitchen-sink record of testdata/compiled.
func compiledTargets(t testing.TB) []struct {
	c   *Codec
	typ reflect.Type
} {
	all := allSets(t)
	var out []struct {
		c   *Codec
		typ reflect.Type
	}
	for _, s := range samples() {
		out = append(out, struct {
			c   *Codec
			typ reflect.Type
		}{mustCodec(t, all, s.name), reflect.TypeOf(s.value)})
	}
	return append(out, struct {
		c   *Codec
		typ reflect.Type
	}{kitchenCodec(t), reflect.TypeFor[kitchen]()})
}

// TestCompiledPlansExist makes sure the property tests below compare the
// compiled path with goavro, not goavro with itself: every record type of the
// project compiles.
func TestCompiledPlansExist(t *testing.T) {
	for _, tg := range compiledTargets(t) {
		pl := tg.c.planOf(tg.typ)
		if pl.err != nil || pl.fast == nil {
			t.Errorf("%s ↔ %s: no compiled plan (err %v)", tg.c.Name(), tg.typ, pl.err)
		}
	}
}

// TestCompiledMatchesGoavro is the property test: random values, generated
// from the schema, encode to goavro's exact bytes and decode back to
// themselves on both paths.
func TestCompiledMatchesGoavro(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 2026))
	n := 300
	if testing.Short() {
		n = 50
	}
	for _, tg := range compiledTargets(t) {
		for i := range n {
			v := randomRecord(r, tg.c.schema, tg.typ)
			want, err := tg.c.encodeGeneric(v.Interface())
			if err != nil {
				t.Fatalf("%s: goavro cannot encode %+v: %v", tg.c.Name(), v, err)
			}
			// By value and by pointer (two different ways in).
			for _, in := range []any{v.Interface(), v.Addr().Interface()} {
				got, err := tg.c.Encode(in)
				if err != nil {
					t.Fatalf("%s #%d: compiled Encode: %v", tg.c.Name(), i, err)
				}
				sameEncoding(t, tg.c, tg.typ, got, want)
			}
			fast := reflect.New(tg.typ)
			if err := tg.c.Decode(want, fast.Interface()); err != nil {
				t.Fatalf("%s #%d: compiled Decode of goavro's bytes: %v", tg.c.Name(), i, err)
			}
			slow := reflect.New(tg.typ)
			if err := tg.c.decodeGeneric(want, slow.Interface()); err != nil {
				t.Fatalf("%s #%d: goavro path: %v", tg.c.Name(), i, err)
			}
			if !equalNaN(fast.Elem(), slow.Elem()) {
				t.Fatalf("%s #%d: decoders disagree:\ncompiled %+v\ngoavro   %+v", tg.c.Name(), i, fast.Elem(), slow.Elem())
			}
			if !equalNaN(fast.Elem(), v) {
				t.Fatalf("%s #%d: round trip changed the value:\n got %+v\nwant %+v", tg.c.Name(), i, fast.Elem(), v)
			}
		}
	}
}

// sameEncoding checks got against goavro's want byte for byte, except that
// goavro writes map entries in Go's random map order: encodings of the same
// length that goavro decodes to equal values are the same encoding then.
func sameEncoding(t *testing.T, c *Codec, typ reflect.Type, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	if len(got) == len(want) && bytes.Equal(got[:HeaderLen], want[:HeaderLen]) {
		g, w := reflect.New(typ), reflect.New(typ)
		errG := c.decodeGeneric(got, g.Interface())
		errW := c.decodeGeneric(want, w.Interface())
		if errG == nil && errW == nil && equalNaN(g.Elem(), w.Elem()) {
			return
		}
	}
	t.Fatalf("%s: compiled encoding differs from goavro's:\n got % x\nwant % x", c.Name(), got, want)
}

// TestCompiledDecodeAgreesOnMutations decodes corrupted encodings (every
// truncation, every single-byte change, appended bytes) on both paths: both
// fail, or both give the same value.
func TestCompiledDecodeAgreesOnMutations(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 15))
	for _, tg := range compiledTargets(t) {
		for range 3 {
			v := randomRecord(r, tg.c.schema, tg.typ)
			data, err := tg.c.Encode(v.Interface())
			if err != nil {
				t.Fatal(err)
			}
			var inputs [][]byte
			for i := range len(data) {
				inputs = append(inputs, data[:i])
			}
			for i := HeaderLen; i < len(data); i++ {
				for _, b := range []byte{0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, data[i] ^ 0x01} {
					m := bytes.Clone(data)
					m[i] = b
					inputs = append(inputs, m)
				}
			}
			inputs = append(inputs, append(bytes.Clone(data), 0), append(bytes.Clone(data), 0x80, 0x80))
			for _, in := range inputs {
				checkDecodersAgree(t, tg.c, tg.typ, in)
			}
		}
	}
}

// checkDecodersAgree decodes data on the compiled and the goavro path into
// targets holding the same non-zero value: both fail and leave the target
// unchanged, or both succeed with equal values, and then the compiled
// encoding of the value is goavro's.
func checkDecodersAgree(t *testing.T, c *Codec, typ reflect.Type, data []byte) {
	t.Helper()
	prior := reflect.New(typ)
	fillSkip(prior.Elem())
	fast, slow := reflect.New(typ), reflect.New(typ)
	fast.Elem().Set(prior.Elem())
	slow.Elem().Set(prior.Elem())
	errFast := c.Decode(data, fast.Interface())
	errSlow := c.decodeGeneric(data, slow.Interface())
	switch {
	case (errFast == nil) != (errSlow == nil):
		t.Fatalf("%s: % x: compiled err %v, goavro err %v", c.Name(), data, errFast, errSlow)
	case errFast != nil:
		if !equalNaN(fast.Elem(), prior.Elem()) {
			t.Fatalf("%s: % x: failed Decode (%v) changed the target", c.Name(), data, errFast)
		}
		return
	}
	if !equalNaN(fast.Elem(), slow.Elem()) {
		t.Fatalf("%s: % x: decoders disagree:\ncompiled %+v\ngoavro   %+v", c.Name(), data, fast.Elem(), slow.Elem())
	}
	got, err := c.Encode(fast.Interface())
	if err != nil {
		t.Fatalf("%s: decoded %+v but cannot encode it: %v", c.Name(), fast.Elem(), err)
	}
	want, err := c.encodeGeneric(fast.Interface())
	if err != nil {
		t.Fatalf("%s: goavro cannot encode %+v: %v", c.Name(), fast.Elem(), err)
	}
	sameEncoding(t, c, typ, got, want)
}

// fillSkip sets the fields the mapping ignores, which Decode must keep.
func fillSkip(v reflect.Value) {
	if f := v.FieldByName("Skip"); f.IsValid() {
		f.SetString("kept")
	}
}

func TestCompiledHostileInput(t *testing.T) {
	c := kitchenCodec(t)
	good, err := c.Encode(kitchen{E: "RED", Fxs: []byte{1, 2, 3}, Either: either0})
	if err != nil {
		t.Fatal(err)
	}
	body := good[HeaderLen:]
	hdr := good[:HeaderLen]
	// A string claiming 2^62 bytes, an array claiming 2^62 items, a map
	// likewise: errors, and no allocation of that size (the test would die).
	huge := []byte{0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}
	for name, in := range map[string][]byte{
		"string length": append(bytes.Clone(body[:17]), huge...),
		"trailing byte": append(bytes.Clone(body), 0),
		"truncated":     body[:len(body)-1],
		"bad boolean":   append([]byte{2}, body[1:]...),
	} {
		var k kitchen
		if err := c.Decode(append(bytes.Clone(hdr), in...), &k); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// The same against a plan with an array first.
	acc := mustCodec(t, allSets(t), "Account")
	prefix := []byte{0, 0, 0, 0} // status, owner, currency, balance
	for name, in := range map[string][]byte{
		"array count":          append(bytes.Clone(prefix), huge...),
		"negative block count": append(bytes.Clone(prefix), 0x01, 0xFE, 0xFF, 0xFF, 0xFF, 0x0F),
		"block size too large": append(bytes.Clone(prefix), 0x01, 0x40, 0, 0, 0, 0),
	} {
		var a account
		if err := acc.Decode(append(acc.header[:HeaderLen:HeaderLen], in...), &a); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestCompiledNarrowIntOverflow: an Avro int that does not fit the Go int8
// fails after the pre-scan accepted the bytes; the target must be unchanged.
func TestCompiledNarrowIntOverflow(t *testing.T) {
	c := kitchenCodec(t)
	data, err := c.Encode(kitchen{E: "RED", Fxs: []byte{1, 2, 3}, Either: either0, S: "new"})
	if err != nil {
		t.Fatal(err)
	}
	data[HeaderLen+1] = 0x80 // i8: 0x80 0x02 = 128 in zigzag: two bytes where one was
	data = append(data[:HeaderLen+2], append([]byte{0x02}, data[HeaderLen+2:]...)...)
	k := kitchen{B: true, S: "old", Skip: "kept"} // b comes before i8 in the data, and is false there
	err = c.Decode(data, &k)
	if err == nil || !strings.Contains(err.Error(), "i8: 128 overflows Go int8") {
		t.Fatalf("err = %v, want an int8 overflow", err)
	}
	if !k.B || k.S != "old" || k.Skip != "kept" {
		t.Fatalf("failed Decode changed the target: %+v", k)
	}
	checkDecodersAgree(t, c, reflect.TypeFor[kitchen](), data)
}

func TestCompiledEncodeErrors(t *testing.T) {
	c := kitchenCodec(t)
	for name, k := range map[string]kitchen{
		"enum":        {E: "PURPLE", Fxs: []byte{1, 2, 3}, Either: either0},
		"fixed size":  {E: "RED", Fxs: []byte{1, 2}, Either: either0},
		"int range":   {E: "RED", Fxs: []byte{1, 2, 3}, Either: either0, I64i: math.MaxInt32 + 1},
		"nested enum": {E: "RED", Fxs: []byte{1, 2, 3}, Either: either0, Colors: []kColor{"RED", "NOPE"}},
		"union none":  {E: "RED", Fxs: []byte{1, 2, 3}},
		"union two":   {E: "RED", Fxs: []byte{1, 2, 3}, Either: kEither{Long: ptrTo(int64(1)), Color: ptrTo(kColor("RED"))}},
		"union enum":  {E: "RED", Fxs: []byte{1, 2, 3}, Either: kEither{Color: ptrTo(kColor("NOPE"))}},
	} {
		_, errFast := c.Encode(k)
		_, errSlow := c.encodeGeneric(k)
		if errFast == nil || errSlow == nil {
			t.Errorf("%s: compiled err %v, goavro err %v; want both", name, errFast, errSlow)
		}
	}
	_, err := c.Encode(kitchen{E: "RED", Fxs: []byte{1, 2, 3}, Either: either0, Colors: []kColor{"RED", "NOPE"}})
	if !strings.Contains(err.Error(), "colors[1]") {
		t.Errorf("error %v does not name the element", err)
	}
}

// TestCompiledPointerShapedStruct covers a struct an interface stores
// directly (one pointer field): Encode by value must not read through the
// interface's data word as if it pointed at the struct.
func TestCompiledPointerShapedStruct(t *testing.T) {
	type onlyList struct {
		List *kNode `avro:"list"`
	}
	if !isDirectIface(reflect.TypeFor[onlyList]()) || isDirectIface(reflect.TypeFor[kInner]()) ||
		isDirectIface(reflect.TypeFor[struct{}]()) || isDirectIface(reflect.TypeFor[struct{ A, B *int }]()) {
		t.Fatal("isDirectIface is wrong")
	}
	c, err := newCodec("OnlyList.avsc", []byte(`{"type": "record", "name": "OnlyList", "fields": [
		{"name": "list", "type": ["null", {"type": "record", "name": "Node", "fields": [
			{"name": "v", "type": "int"}, {"name": "next", "type": ["null", "Node"]}]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	v := onlyList{List: &kNode{V: 5, Next: &kNode{V: -1}}}
	want, err := c.encodeGeneric(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []any{v, &v} {
		got, err := c.Encode(in)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Encode(%T) = % x, %v; want % x", in, got, err, want)
		}
	}
	var back onlyList
	if err := c.Decode(want, &back); err != nil || !reflect.DeepEqual(back, v) {
		t.Fatalf("Decode = %+v, %v", back, err)
	}
}

// TestCompiledSignallingNaN: goavro's path turns a signalling NaN in a Go
// float32 into a quiet one (through float64 and back); the compiled path
// must write the same bytes, and decode the same value.
func TestCompiledSignallingNaN(t *testing.T) {
	c := kitchenCodec(t)
	k := kitchen{E: "RED", Fxs: []byte{1, 2, 3}, Either: either0}
	*(*uint32)(unsafe.Pointer(&k.F32)) = 0x7F800001
	want, err := c.encodeGeneric(k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Encode(k)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Encode = % x, %v\nwant % x", got, err, want)
	}
	raw := bytes.Clone(want)
	i := bytes.Index(raw, []byte{0x01, 0x00, 0xC0, 0x7F})
	if i < 0 {
		t.Fatalf("quiet NaN not found in % x", raw)
	}
	raw[i+2] = 0x80 // back to signalling in the data
	checkDecodersAgree(t, c, reflect.TypeFor[kitchen](), raw)
}

// TestCompiledGolden pins the compiled encoding of one value of every kind
// (testdata/golden/compiled/Kitchen.hex; the project's records are pinned by
// TestGolden, which goes through the compiled path too). Maps hold one entry
// each so goavro's bytes are deterministic.
func TestCompiledGolden(t *testing.T) {
	c := kitchenCodec(t)
	s := "opt"
	k := kitchen{
		B: true, I8: -128, I16: 32767, I32: math.MinInt32, I64i: math.MaxInt32, Ii: -1,
		L: math.MinInt64, Li: math.MaxInt64, F32: -1.5, F64f: 3.25, D: math.Inf(-1),
		S: "grüße €", Named: "named", UUID: "123e4567-e89b-12d3-a456-426614174000",
		Bs: []byte{0, 1, 0xFF}, Fx: [4]byte{0xDE, 0xAD, 0xBE, 0xEF}, Fxs: []byte{1, 2, 3}, E: "BLUE",
		Arr: []int64{0, -1, 1 << 40}, Recs: []kInner{{A: "a", N: 1}, {A: "", N: -64}},
		M: map[string]int32{"k": 7}, MR: map[kLabel]kInner{"r": {A: "x", N: 2}},
		Opt: &s, OptR: &kInner{A: "o", N: 3}, Nest: kInner{A: "nest", N: 4},
		Empties: []struct{}{{}, {}}, Colors: []kColor{"RED", "GREEN"},
		List:   &kNode{V: 1, Next: &kNode{V: 2}},
		Choice: kChoice{Inner: &kInner{A: "c", N: 5}}, Either: kEither{Color: ptrTo(kColor("GREEN"))},
		Choices: []kSmall{{}, {Double: ptrTo(0.5)}, {Color: ptrTo(kColor("BLUE"))}},
	}
	got, err := c.Encode(k)
	if err != nil {
		t.Fatal(err)
	}
	want, err := c.encodeGeneric(k)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("compiled % x\ngoavro   % x", got, want)
	}
	checkGolden(t, "compiled/Kitchen.hex", hex.Dump(got))
	var back kitchen
	if err := c.Decode(got, &back); err != nil || !reflect.DeepEqual(back, k) {
		t.Fatalf("Decode = %+v, %v", back, err)
	}
}

// TestCompiledConcurrent uses one codec from many goroutines, first use (the
// plan being built) included; run with -race.
func TestCompiledConcurrent(t *testing.T) {
	c := kitchenCodec(t)
	r := rand.New(rand.NewPCG(3, 4))
	values := make([]kitchen, 8)
	for i := range values {
		values[i] = randomRecord(r, c.schema, reflect.TypeFor[kitchen]()).Interface().(kitchen)
	}
	done := make(chan error, len(values))
	for _, v := range values {
		go func() {
			for range 20 {
				data, err := c.Encode(&v)
				if err != nil {
					done <- err
					return
				}
				var back kitchen
				if err := c.Decode(data, &back); err != nil {
					done <- err
					return
				}
				if !equalNaN(reflect.ValueOf(&back).Elem(), reflect.ValueOf(&v).Elem()) {
					done <- errors.New("round trip changed the value")
					return
				}
			}
			done <- nil
		}()
	}
	for range values {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// either0 sets the kitchen's union without a null branch.
var either0 = kEither{Long: new(int64)}

// TestCompiledBlocksFollowMaxBlockCount: goavro splits arrays and maps into
// blocks of at most goavro.MaxBlockCount items and refuses larger blocks;
// the compiled path does the same.
func TestCompiledBlocksFollowMaxBlockCount(t *testing.T) {
	defer func(old int64) { goavro.MaxBlockCount = old }(goavro.MaxBlockCount)
	goavro.MaxBlockCount = 2
	c := kitchenCodec(t)
	k := kitchen{E: "RED", Fxs: []byte{1, 2, 3}, Either: either0, Arr: []int64{1, 2, 3, 4, 5},
		M: map[string]int32{"a": 1, "b": 2, "c": 3}, Colors: []kColor{"RED", "RED"}}
	want, err := c.encodeGeneric(k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Encode(k)
	if err != nil {
		t.Fatal(err)
	}
	sameEncoding(t, c, reflect.TypeFor[kitchen](), got, want)
	goavro.MaxBlockCount = 1 // now the data has blocks too large for both
	checkDecodersAgree(t, c, reflect.TypeFor[kitchen](), got)
	var back kitchen
	if err := c.Decode(got, &back); err == nil {
		t.Fatal("a block larger than MaxBlockCount decoded")
	}
}
