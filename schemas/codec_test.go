package schemas

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kcqrs/kcqrs/wire"
)

func TestLoadEmbeddedSets(t *testing.T) {
	for _, tc := range []struct {
		load func() (*Set, error)
		fsys fs.FS
		want []string
	}{
		{LoadEnvelopes, Envelopes, []string{"kcqrs.Event", "kcqrs.Reply", "kcqrs.Snapshot"}},
		{LoadAccount, Account, []string{
			"kcqrs.example.account.Account", "kcqrs.example.account.AccountClosed",
			"kcqrs.example.account.AccountOpened", "kcqrs.example.account.CloseAccount",
			"kcqrs.example.account.CompleteTransfer", "kcqrs.example.account.CreditForTransfer",
			"kcqrs.example.account.DebitForTransfer",
			"kcqrs.example.account.Deposit", "kcqrs.example.account.MoneyDeposited",
			"kcqrs.example.account.MoneyWithdrawn", "kcqrs.example.account.OpenAccount",
			"kcqrs.example.account.PayOutAndClose",
			"kcqrs.example.account.RefundTransfer", "kcqrs.example.account.TransferCompleted", "kcqrs.example.account.TransferCreditRefused",
			"kcqrs.example.account.TransferCredited", "kcqrs.example.account.TransferDebited",
			"kcqrs.example.account.TransferRefunded", "kcqrs.example.account.Withdraw",
		}},
		{LoadFolder, Folder, []string{
			"kcqrs.example.folder.CreateFolder", "kcqrs.example.folder.DeleteFolder",
			"kcqrs.example.folder.Folder", "kcqrs.example.folder.FolderCreated",
			"kcqrs.example.folder.FolderDeleted", "kcqrs.example.folder.FolderRenamed",
			"kcqrs.example.folder.RenameFolder",
		}},
	} {
		s, err := tc.load()
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Names(); !slices.Equal(got, tc.want) {
			t.Errorf("Names() = %v, want %v", got, tc.want)
		}
		// The exported file system of the directory loads the same.
		s, err = Load(tc.fsys, ".")
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Names(); !slices.Equal(got, tc.want) {
			t.Errorf("Load(fsys, \".\").Names() = %v, want %v", got, tc.want)
		}
	}
	if _, err := Load(Files, "."); err == nil || !strings.Contains(err.Error(), "no .avsc files") {
		t.Errorf("Load(Files, \".\") err = %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	all := allSets(t)
	for _, s := range samples() {
		t.Run(s.name, func(t *testing.T) {
			c := mustCodec(t, all, s.name)
			if err := c.Bind(reflect.TypeOf(s.value)); err != nil {
				if _, exact := goldenNative(t, all, c, s.value); !exact {
					// The schema gained a field since the sample was
					// written (TestGolden covers it through resolution).
					t.Skipf("sample of an older version: %v", err)
				}
				t.Fatal(err)
			}

			data, err := c.Encode(s.value)
			if err != nil {
				t.Fatal(err)
			}
			if data[0] != 0xC3 || data[1] != 0x01 {
				t.Fatalf("header starts % x, want c3 01", data[:2])
			}
			if got := binary.LittleEndian.Uint64(data[2:10]); got != c.Avro().Rabin || got != c.Fingerprint() {
				t.Fatalf("header fingerprint %#x, goavro's Rabin %#x, Fingerprint() %#x", got, c.Avro().Rabin, c.Fingerprint())
			}
			if fp, err := Fingerprint(data); err != nil || fp != c.Fingerprint() {
				t.Fatalf("Fingerprint(data) = %#x, %v; want %#x", fp, err, c.Fingerprint())
			}
			if byFP, ok := all.ByFingerprint(c.Fingerprint()); !ok || byFP != c {
				t.Fatalf("ByFingerprint(%#x) = %v, %v", c.Fingerprint(), byFP, ok)
			}
			// The payload after the header is what goavro itself writes.
			native, err := c.ToNative(s.value)
			if err != nil {
				t.Fatal(err)
			}
			want, err := c.Avro().SingleFromNative(nil, native)
			if err != nil || !bytes.Equal(data, want) {
				t.Fatalf("Encode = % x\ngoavro  % x (%v)", data, want, err)
			}

			p := newPtr(s.value)
			if err := c.Decode(data, p); err != nil {
				t.Fatal(err)
			}
			if got := deref(p); !reflect.DeepEqual(got, s.value) {
				t.Fatalf("binary round trip:\n got %+v\nwant %+v", got, s.value)
			}
			// A pointer encodes like its value.
			if data2, err := c.Encode(p); err != nil || !bytes.Equal(data, data2) {
				t.Fatalf("Encode(pointer) = % x, %v", data2, err)
			}

			js, err := c.EncodeJSON(s.value)
			if err != nil {
				t.Fatal(err)
			}
			p = newPtr(s.value)
			if err := c.DecodeJSON(js, p); err != nil {
				t.Fatalf("%v\n%s", err, js)
			}
			if got := deref(p); !reflect.DeepEqual(got, s.value) {
				t.Fatalf("JSON round trip via %s:\n got %+v\nwant %+v", js, got, s.value)
			}
		})
	}
}

func TestEncodeJSONIsDeterministicAndOrdered(t *testing.T) {
	c := mustCodec(t, allSets(t), "kcqrs.Snapshot")
	first, err := c.EncodeJSON(sampleSnapshot(3))
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, _ := c.EncodeJSON(sampleSnapshot(3))
		if !bytes.Equal(first, again) {
			t.Fatalf("EncodeJSON differs between calls:\n%s\n%s", first, again)
		}
	}
	if !bytes.HasPrefix(first, []byte(`{"aggregateType":"account","aggregateId":"acc-42","version":`)) {
		t.Fatalf("fields not in schema order: %s", first)
	}
}

func TestDecodeWithWrongCodec(t *testing.T) {
	all := allSets(t)
	dep := mustCodec(t, all, "Deposit")
	wd := mustCodec(t, all, "Withdraw")
	data, err := dep.Encode(deposit{Amount: 5})
	if err != nil {
		t.Fatal(err)
	}
	// The same binary body: without the fingerprint, Withdraw would read it.
	var w withdraw
	err = wd.Decode(data, &w)
	fe, ok := err.(*FingerprintError)
	if !ok {
		t.Fatalf("err = %v (%T), want *FingerprintError", err, err)
	}
	if fe.Got != dep.Fingerprint() || fe.Want != wd.Fingerprint() {
		t.Fatalf("FingerprintError{Got: %#x, Want: %#x}, want {%#x, %#x}", fe.Got, fe.Want, dep.Fingerprint(), wd.Fingerprint())
	}
	if w != (withdraw{}) {
		t.Fatalf("target changed to %+v", w)
	}
	var target *FingerprintError
	if !errors.As(err, &target) {
		t.Fatal("errors.As failed")
	}
	if c, ok := all.ByFingerprint(fe.Got); !ok || c != dep {
		t.Fatalf("ByFingerprint(Got) = %v", c)
	}
}

func TestNotSingleObject(t *testing.T) {
	c := mustCodec(t, allSets(t), "Reply")
	good, err := c.Encode(sampleReply())
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{
		nil,
		{},
		{0xC3},
		good[:HeaderLen-1],
		append([]byte{0xC3, 0x02}, good[2:]...),
		append([]byte{0x00, 0x01}, good[2:]...),
		[]byte(`{"commandId":"x"}`),
	} {
		if _, err := Fingerprint(data); err != ErrNotSingleObject {
			t.Errorf("Fingerprint(% x) err = %v, want ErrNotSingleObject", data, err)
		}
		var r wire.Reply
		if err := c.Decode(data, &r); !errors.Is(err, ErrNotSingleObject) {
			t.Errorf("Decode(% x) err = %v, want ErrNotSingleObject", data, err)
		}
	}
}

func TestDecodeTruncatedAndTrailing(t *testing.T) {
	c := mustCodec(t, allSets(t), "Snapshot")
	want := sampleSnapshot(3)
	data, err := c.Encode(want)
	if err != nil {
		t.Fatal(err)
	}
	for n := HeaderLen; n < len(data); n++ {
		s := sampleSnapshot(1)
		if err := c.Decode(data[:n], &s); err == nil {
			t.Fatalf("Decode of %d of %d bytes succeeded", n, len(data))
		}
		if !reflect.DeepEqual(s, sampleSnapshot(1)) {
			t.Fatalf("failed Decode changed the target")
		}
	}
	var s wire.Snapshot
	err = c.Decode(append(slices.Clip(data), 0), &s)
	if err == nil || !strings.Contains(err.Error(), "bytes left") {
		t.Fatalf("trailing byte: err = %v", err)
	}
}

func TestDecodeHostileBlockCount(t *testing.T) {
	c := mustCodec(t, allSets(t), "Snapshot")
	data, err := c.Encode(wire.Snapshot{AggregateType: "a", AggregateID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	// The last byte is the empty array's block count 0. Claim 2^31-1 items
	// (zig-zag varint), which goavro would allocate up front.
	hostile := append(slices.Clone(data[:len(data)-1]), 0xFE, 0xFF, 0xFF, 0xFF, 0x0F)
	var s wire.Snapshot
	err = c.Decode(hostile, &s)
	if err == nil || !strings.Contains(err.Error(), "block count") {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeCopiesBytes(t *testing.T) {
	c := mustCodec(t, allSets(t), "Event")
	in := wire.Event{EventType: "x", Payload: []byte("payload")}
	data, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	var out wire.Event
	if err := c.Decode(data, &out); err != nil {
		t.Fatal(err)
	}
	clear(data)
	if string(out.Payload) != "payload" {
		t.Fatalf("decoded payload aliases the input: %q", out.Payload)
	}
}

func TestEmptyCollectionsDecodeAsNil(t *testing.T) {
	c := mustCodec(t, allSets(t), "Snapshot")
	data, err := c.Encode(wire.Snapshot{State: []byte{}, Recent: []wire.RecentCommand{}})
	if err != nil {
		t.Fatal(err)
	}
	s := sampleSnapshot(2)
	if err := c.Decode(data, &s); err != nil {
		t.Fatal(err)
	}
	if s.State != nil || s.Recent != nil {
		t.Fatalf("got %#v", s)
	}
}

func TestDecodeJSONValidates(t *testing.T) {
	c := mustCodec(t, allSets(t), "Reply")
	const ok = `{"commandId":"c","aggregateType":"t","aggregateId":"i","status":"ACCEPTED","version":3,"events":1,"code":"","message":""`
	for _, tc := range []struct {
		json string
		want string // in the error; empty for success
	}{
		{ok + `}`, ""}, // duplicate has a default
		{ok + `,"duplicate":true}`, ""},
		{"\n  " + ok + "}\n", ""},
		{`{"commandId":"c","aggregateType":"t","aggregateId":"i","status":"ACCEPTED","version":3,"events":1,"code":""}`, "message: missing required field"},
		{`{"commandId":"c","aggregateType":"t","aggregateId":"i","status":"ACCEPTED","version":3,"events":1}`, "message: missing required field"},
		{strings.Replace(ok, `"version":3`, `"version":"3"`, 1) + `}`, `version: want Avro long, got JSON string "3"`},
		{strings.Replace(ok, `"version":3`, `"version":3.5`, 1) + `}`, `version: 3.5 is not an Avro long`},
		{strings.Replace(ok, `"events":1`, `"events":4294967296`, 1) + `}`, `events: 4294967296 is not an Avro int`},
		{strings.Replace(ok, `"ACCEPTED"`, `"accepted"`, 1) + `}`, `status: "accepted" is not a symbol of enum kcqrs.ReplyStatus`},
		{ok + `,"duplicate":"yes"}`, `duplicate: want Avro boolean`},
		{ok + `,"extra":1}`, `extra: unknown field of record kcqrs.Reply`},
		{ok + `,"commandId":null}`, `commandId: want Avro string, got JSON null`},
		{ok, `invalid JSON`},
		{ok + `} {}`, `data after the record`},
		{`[]`, `want Avro record kcqrs.Reply, got JSON array`},
		{``, `invalid JSON`},
		{strings.Replace(ok, `"c"`, "\"\x84\"", 1) + `}`, `not UTF-8`},
		// JSON's whitespace is space, tab, CR and LF (RFC 8259): nothing
		// else may surround the record.
		{" \t\r\n" + ok + "} \t\r\n", ""},
		{ok + "}\u00a0", `invalid JSON`},
		{"\u00a0" + ok + "}", `invalid JSON`},
		{ok + "}\u0085", `invalid JSON`},
		{"\v" + ok + "}", `invalid JSON`},
		{ok + "}\f", `invalid JSON`},
		{"\ufeff" + ok + "}", `invalid JSON`},
		// A lone surrogate escape is not a character: goavro read
		// "\ud800\u0041" as U+FFFD, losing the "A".
		{strings.Replace(ok, `"c"`, `"\ud800\u0041"`, 1) + `}`, `surrogate`},
		{strings.Replace(ok, `"c"`, `"\ud800\ud800"`, 1) + `}`, `surrogate`},
		{strings.Replace(ok, `"c"`, `"\udc00"`, 1) + `}`, `surrogate`},
		{strings.Replace(ok, `"c"`, `"x\ud800"`, 1) + `}`, `surrogate`},
		{strings.Replace(ok, `"c"`, `"\ud800\udc00 \uDBFF\uDFFF \\ud800"`, 1) + `}`, ""},
		{strings.Replace(ok, `"version":3`, `"version":3.0`, 1) + `}`, `version: 3.0 is not an Avro long`},
		{strings.Replace(ok, `"version":3`, `"version":9223372036854775808`, 1) + `}`, `is not an Avro long`},
		{strings.Replace(ok, `"version":3`, `"version":-9223372036854775808`, 1) + `}`, ""},
		// A field given twice is refused, whichever value is valid.
		{ok + `,"version":4}`, `duplicate key: "version"`},
		{strings.Replace(ok, `"version":3`, `"version":"x"`, 1) + `,"version":5}`, `version`},
	} {
		var r wire.Reply
		err := c.DecodeJSON([]byte(tc.json), &r)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("DecodeJSON(%s): %v", tc.json, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("DecodeJSON(%s) err = %v, want it to contain %q", tc.json, err, tc.want)
		case tc.want != "" && r != (wire.Reply{}):
			t.Errorf("failed DecodeJSON changed the target: %+v", r)
		}
	}
}

func TestDecodeJSONReportsEveryBadField(t *testing.T) {
	c := mustCodec(t, allSets(t), "Snapshot")
	err := c.DecodeJSON([]byte(`{"aggregateType":1,"aggregateId":"a","version":1,"state":"",
		"recent":[{"commandId":"c","reply":{"commandId":"c","aggregateType":"t","aggregateId":"i","status":"NOPE","version":3,"events":1,"code":""}}]}`), new(wire.Snapshot))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"aggregateType: want Avro string, got JSON number 1",
		`recent[0].reply.status: "NOPE" is not a symbol`,
		"recent[0].reply.message: missing required field",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	c := mustCodec(t, allSets(t), "Reply")
	r := sampleReply()
	r.Status = ""
	if _, err := c.Encode(r); err == nil || !strings.Contains(err.Error(), "status") {
		t.Errorf("empty enum: err = %v", err)
	}
	if _, err := c.EncodeJSON(r); err == nil {
		t.Errorf("empty enum in JSON: no error")
	}
	if _, err := c.Encode((*wire.Reply)(nil)); err == nil {
		t.Error("nil pointer: no error")
	}
	if _, err := c.Encode("reply"); err == nil {
		t.Error("string: no error")
	}
	if _, err := c.Encode(wire.Event{}); err == nil || !strings.Contains(err.Error(), "wire.Event") {
		t.Errorf("wrong struct: err = %v", err)
	}
	if err := c.Decode(nil, wire.Reply{}); err == nil {
		t.Error("Decode into a non-pointer: no error")
	}
	if err := c.Decode(nil, (*wire.Reply)(nil)); err == nil {
		t.Error("Decode into a nil pointer: no error")
	}
	if err := c.DecodeJSON(nil, new(int)); err == nil {
		t.Error("DecodeJSON into *int: no error")
	}
}

func TestConcurrentUse(t *testing.T) {
	c := mustCodec(t, allSets(t), "Snapshot")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				want := sampleSnapshot(4)
				data, err := c.Encode(&want)
				if err != nil {
					t.Error(err)
					return
				}
				var got wire.Snapshot
				if err := c.Decode(data, &got); err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("round trip: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestSchemaAndSource(t *testing.T) {
	c := mustCodec(t, allSets(t), "kcqrs.Reply")
	if c.Name() != "kcqrs.Reply" || c.ShortName() != "Reply" || c.String() != "kcqrs.Reply" {
		t.Fatalf("names %q %q", c.Name(), c.ShortName())
	}
	if strings.Contains(c.Schema(), "doc") || strings.Contains(c.Schema(), "default") {
		t.Errorf("Schema() is not the canonical form: %s", c.Schema())
	}
	if !strings.Contains(c.Source(), `"default": "INTERNAL_ERROR"`) {
		t.Errorf("Source() lacks the enum default: %s", c.Source())
	}
}
