package topology

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/wire"
)

// The hand-written envelope encodings must be byte for byte what the generic
// goavro codecs write, and decode exactly what they decode: records already
// on Kafka and the consumers of other teams depend on it.

func randString(rng *rand.Rand) string {
	alphabet := []rune("abcXYZ019-_ /\\\"\n\t\r\b\f\x00\x01\x7f\u00e9\u00ff\u2028\u4e16\U0001F600\ufffd")
	n := rng.IntN(12)
	if rng.IntN(8) == 0 {
		n = rng.IntN(300) // lengths beyond one varint byte
	}
	var sb strings.Builder
	for i := 0; i < n; i++ {
		sb.WriteRune(alphabet[rng.IntN(len(alphabet))])
	}
	return sb.String()
}

func randLong(rng *rand.Rand) int64 {
	switch rng.IntN(5) {
	case 0:
		return 0
	case 1:
		return math.MaxInt64 - rng.Int64N(3)
	case 2:
		return math.MinInt64 + rng.Int64N(3)
	case 3:
		return rng.Int64N(300) - 150
	}
	return int64(rng.Uint64())
}

func randInt(rng *rand.Rand) int32 {
	switch rng.IntN(4) {
	case 0:
		return math.MaxInt32
	case 1:
		return math.MinInt32
	case 2:
		return int32(rng.IntN(300) - 150)
	}
	return int32(rng.Uint32())
}

func randReply(rng *rand.Rand) wire.Reply {
	return wire.Reply{
		CommandID: randString(rng), AggregateType: randString(rng), AggregateID: randString(rng),
		Status:  statusSymbols[rng.IntN(len(statusSymbols))],
		Version: randLong(rng), Events: randInt(rng),
		Code: randString(rng), Message: randString(rng), Duplicate: rng.IntN(2) == 0,
	}
}

func randBytes(rng *rand.Rand) []byte {
	b := make([]byte, rng.IntN(200))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func randSnapshot(rng *rand.Rand) wire.Snapshot {
	s := wire.Snapshot{AggregateType: randString(rng), AggregateID: randString(rng), Version: randLong(rng), State: randBytes(rng)}
	if n := rng.IntN(40); n > 0 {
		s.Recent = make([]wire.RecentCommand, n)
		for i := range s.Recent {
			s.Recent[i] = wire.Remember(randReply(rng))
			s.Recent[i].CommandID = randString(rng)
		}
	}
	return s
}

func envRegistry(t testing.TB) *Registry {
	t.Helper()
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEnvelopesMatchGoavro(t *testing.T) {
	r := envRegistry(t)
	rng := rand.New(rand.NewPCG(8, 8))
	for i := 0; i < 3000; i++ {
		rep := randReply(rng)
		want, err := r.reply.Encode(rep)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := r.fast.encodeReply(&rep)
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("reply %+v:\n got %x\nwant %x", rep, got, want)
		}
		wantJSON, err := r.reply.EncodeJSON(rep)
		if err != nil {
			t.Fatal(err)
		}
		gotJSON, ok := r.fast.encodeReplyJSON(&rep)
		if !ok || !bytes.Equal(gotJSON, wantJSON) {
			t.Fatalf("reply JSON %+v:\n got %s\nwant %s", rep, gotJSON, wantJSON)
		}

		ev := wire.Event{
			AggregateType: randString(rng), AggregateID: randString(rng), Version: randLong(rng),
			EventType: randString(rng), CommandID: randString(rng), TimestampMillis: randLong(rng), Payload: randBytes(rng),
		}
		if want, err = r.event.Encode(ev); err != nil {
			t.Fatal(err)
		}
		if got := r.fast.encodeEvent(&ev); !bytes.Equal(got, want) {
			t.Fatalf("event %+v:\n got %x\nwant %x", ev, got, want)
		}

		s := randSnapshot(rng)
		if want, err = r.snapshot.Encode(s); err != nil {
			t.Fatal(err)
		}
		got, ok = r.fast.encodeSnapshot(&s)
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("snapshot %+v:\n got %x\nwant %x", s, got, want)
		}
		var viaGoavro wire.Snapshot
		if err := r.snapshot.Decode(want, &viaGoavro); err != nil {
			t.Fatal(err)
		}
		dec, items, err := r.fast.decodeSnapshot(want)
		if err != nil {
			t.Fatal(err)
		}
		if !snapshotsEqual(dec, viaGoavro) {
			t.Fatalf("decoded snapshot:\n got %+v\nwant %+v", dec, viaGoavro)
		}
		if len(items) != len(s.Recent) {
			t.Fatalf("%d encoded items for %d recent commands", len(items), len(s.Recent))
		}
		for j := range items {
			if enc, _ := appendRecent(nil, &s.Recent[j]); !bytes.Equal(items[j], enc) {
				t.Fatalf("item %d: got %x, want %x", j, items[j], enc)
			}
		}
	}
}

// snapshotsEqual treats a nil and an empty Recent alike (the generic
// decoder's choice between them is not part of the format).
func snapshotsEqual(a, b wire.Snapshot) bool {
	if len(a.Recent) == 0 && len(b.Recent) == 0 {
		a.Recent, b.Recent = nil, nil
	}
	if len(a.State) == 0 && len(b.State) == 0 {
		a.State, b.State = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// An unknown status is not encodable by either path; the fast path defers
// to the generic codec so the error is the generic one.
func TestEnvelopesUnknownStatusFallsBack(t *testing.T) {
	r := envRegistry(t)
	rep := wire.Reply{CommandID: "c", Status: "NOT_A_STATUS"}
	if _, ok := r.fast.encodeReply(&rep); ok {
		t.Fatal("fast reply encoding accepted an unknown status")
	}
	if _, ok := r.fast.encodeReplyJSON(&rep); ok {
		t.Fatal("fast JSON reply encoding accepted an unknown status")
	}
	s := wire.Snapshot{Recent: []wire.RecentCommand{wire.Remember(rep)}}
	if _, ok := r.fast.encodeSnapshot(&s); ok {
		t.Fatal("fast snapshot encoding accepted an unknown status")
	}
	_, errFast := r.EncodeReply(rep, wire.ContentTypeAvro)
	_, errGeneric := r.reply.Encode(rep)
	if errFast == nil || errGeneric == nil || errFast.Error() != errGeneric.Error() {
		t.Fatalf("EncodeReply error %v, generic %v", errFast, errGeneric)
	}
}

// readGoldenHex parses a hex.Dump file of schemas' golden tests.
func readGoldenHex(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "schemas", "testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, line := range strings.Split(string(raw), "\n") {
		if len(line) < 10 {
			continue
		}
		hexPart := line[10:]
		if i := strings.Index(hexPart, "|"); i >= 0 {
			hexPart = hexPart[:i]
		}
		b, err := hex.DecodeString(strings.ReplaceAll(hexPart, " ", ""))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, b...)
	}
	return out
}

func TestEnvelopesGolden(t *testing.T) {
	r := envRegistry(t)
	golden := func(name string) ([]byte, []byte) {
		js, err := os.ReadFile(filepath.Join("..", "schemas", "testdata", "golden", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		return readGoldenHex(t, name+".hex"), bytes.TrimSpace(js)
	}

	bin, js := golden("kcqrs.Reply")
	var rep wire.Reply
	if err := r.reply.DecodeJSON(js, &rep); err != nil {
		t.Fatal(err)
	}
	if got, ok := r.fast.encodeReply(&rep); !ok || !bytes.Equal(got, bin) {
		t.Errorf("reply: got %x, golden %x", got, bin)
	}
	if got, ok := r.fast.encodeReplyJSON(&rep); !ok || !bytes.Equal(got, js) {
		t.Errorf("reply JSON: got %s, golden %s", got, js)
	}

	bin, js = golden("kcqrs.Event")
	var ev wire.Event
	if err := r.event.DecodeJSON(js, &ev); err != nil {
		t.Fatal(err)
	}
	if got := r.fast.encodeEvent(&ev); !bytes.Equal(got, bin) {
		t.Errorf("event: got %x, golden %x", got, bin)
	}

	bin, js = golden("kcqrs.Snapshot")
	var s wire.Snapshot
	if err := r.snapshot.DecodeJSON(js, &s); err != nil {
		t.Fatal(err)
	}
	if got, ok := r.fast.encodeSnapshot(&s); !ok || !bytes.Equal(got, bin) {
		t.Errorf("snapshot: got %x, golden %x", got, bin)
	}
	dec, _, err := r.fast.decodeSnapshot(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !snapshotsEqual(dec, s) {
		t.Errorf("golden snapshot decoded to %+v, want %+v", dec, s)
	}
}

// A snapshot written with another schema is left to the generic decoder
// (which resolves writer schemas), never misread.
func TestDecodeSnapshotOtherSchema(t *testing.T) {
	r := envRegistry(t)
	enc, ok := r.fast.encodeSnapshot(&wire.Snapshot{AggregateType: "account", AggregateID: "a"})
	if !ok {
		t.Fatal("encode")
	}
	enc[5] ^= 0xff // another fingerprint
	if _, _, err := r.fast.decodeSnapshot(enc); !errors.Is(err, errSnapshotSchema) {
		t.Fatalf("got %v, want errSnapshotSchema", err)
	}
	if _, _, err := r.fast.decodeSnapshot([]byte{1, 2, 3}); !errors.Is(err, schemas.ErrNotSingleObject) {
		t.Fatalf("got %v, want ErrNotSingleObject", err)
	}
}

// FuzzDecodeSnapshotFast: on any input the hand-written decoder succeeds
// exactly when the generic one does, with the same value, and never panics.
func FuzzDecodeSnapshotFast(f *testing.F) {
	r := envRegistry(f)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20; i++ {
		s := randSnapshot(rng)
		enc, _ := r.fast.encodeSnapshot(&s)
		f.Add(enc[schemas.HeaderLen:])
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		data := append(append([]byte{}, r.fast.snapHdr[:]...), body...)
		got, _, errFast := r.fast.decodeSnapshot(data)
		var want wire.Snapshot
		errGeneric := r.snapshot.Decode(data, &want)
		if (errFast == nil) != (errGeneric == nil) {
			t.Fatalf("fast error %v, generic error %v", errFast, errGeneric)
		}
		if errFast == nil && !snapshotsEqual(got, want) {
			t.Fatalf("fast %+v, generic %+v", got, want)
		}
	})
}

// The processor keeps each remembered command's encoding and reuses it for
// every later snapshot; through any sequence of commands, window slides and
// decodes, the snapshot must stay byte for byte goavro's.
func TestIncrementalSnapshotMatchesGoavro(t *testing.T) {
	r := envRegistry(t)
	p := &Processor{reg: r, cfg: Config{DedupeWindow: 5}}
	bt := &boundType{}
	encodeAll := func(a *aggState) ([]byte, []byte) {
		s := wire.Snapshot{AggregateType: "account", AggregateID: a.id, Version: a.version, State: []byte{1, 2}, Recent: a.recent}
		want, err := r.snapshot.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.recentEnc) != len(a.recent) {
			t.Fatalf("recentEnc has %d entries for %d recent commands", len(a.recentEnc), len(a.recent))
		}
		return r.fast.encodeSnapshotItems(&s, a.recentEnc), want
	}
	rng := rand.New(rand.NewPCG(3, 4))
	a := &aggState{key: "account/x", id: "x", bt: bt}
	for i := 0; i < 40; i++ {
		p.remember(a, randString(rng), randReply(rng))
		got, want := encodeAll(a)
		if !bytes.Equal(got, want) {
			t.Fatalf("after %d commands:\n got %x\nwant %x", i+1, got, want)
		}
		if i%9 == 4 {
			// As after a load from the store: decode and go on from there.
			s, items, err := r.fast.decodeSnapshot(want)
			if err != nil {
				t.Fatal(err)
			}
			a = &aggState{key: a.key, id: s.AggregateID, bt: bt, version: s.Version, recent: s.Recent, recentEnc: items}
		}
	}
	// A state decoded by the generic codec has no encodings: the next
	// snapshot must encode the window afresh, not drop it.
	a.recentEnc = nil
	p.remember(a, "after-generic", randReply(rng))
	if a.recentEnc != nil {
		t.Fatal("recentEnc claims to be in step after a generic decode")
	}
	s := wire.Snapshot{AggregateType: "account", AggregateID: a.id, Version: a.version, Recent: a.recent}
	want, _ := r.snapshot.Encode(s)
	got, err := r.encodeSnapshotEnvelope("account", a, nil)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("snapshot after a generic decode: %v\n got %x\nwant %x", err, got, want)
	}
}

// TestSnapshotV1DuplicateGetsOriginalReply: a changelog written before the
// compact dedupe window (kcqrs.Snapshot v1 kept each remembered command's
// whole reply) still restores, and a retry of a command it remembers gets
// back exactly the reply the command got then, marked as a duplicate; the
// snapshot written next is v2 and says the same.
func TestSnapshotV1DuplicateGetsOriginalReply(t *testing.T) {
	reg := testRegistry(t)
	envs, err := schemas.LoadEnvelopes()
	if err != nil {
		t.Fatal(err)
	}
	vs, err := envs.Versions("kcqrs.Snapshot")
	if err != nil || len(vs) < 2 {
		t.Fatalf("kcqrs.Snapshot versions: %d, %v", len(vs), err)
	}
	v1 := vs[0]
	type recentV1 struct {
		CommandID string     `avro:"commandId"`
		Reply     wire.Reply `avro:"reply"`
	}
	type snapshotV1 struct {
		AggregateType string     `avro:"aggregateType"`
		AggregateID   string     `avro:"aggregateId"`
		Version       int64      `avro:"version"`
		State         []byte     `avro:"state"`
		Recent        []recentV1 `avro:"recent"`
	}
	state, err := reg.types["account"].state.Encode(account.Account{Status: account.StatusOpen, Owner: "Ann", Currency: "EUR", Balance: 5})
	if err != nil {
		t.Fatal(err)
	}
	originals := []wire.Reply{
		{CommandID: "c1", AggregateType: "account", AggregateID: "a1", Status: wire.StatusAccepted, Version: 1, Events: 1},
		{CommandID: "c2", AggregateType: "account", AggregateID: "a1", Status: wire.StatusRejected, Version: 1, Code: "insufficient_funds", Message: "balance 5, asked 9"},
		{CommandID: "c3", AggregateType: "account", AggregateID: "a1", Status: wire.StatusAccepted, Version: 2, Events: 2},
	}
	old := snapshotV1{AggregateType: "account", AggregateID: "a1", Version: 2, State: state}
	for _, r := range originals {
		old.Recent = append(old.Recent, recentV1{CommandID: r.CommandID, Reply: r})
	}
	data, err := v1.Encode(old)
	if err != nil {
		t.Fatal(err)
	}
	if fp, _ := schemas.Fingerprint(data); fp == reg.snapshot.Fingerprint() {
		t.Fatal("the v1 snapshot has the current fingerprint")
	}
	check := func(what string, a *aggState) {
		t.Helper()
		if len(a.recent) != len(originals) {
			t.Fatalf("%s: %d remembered commands, want %d", what, len(a.recent), len(originals))
		}
		for i, want := range originals {
			want.Duplicate = true
			if got := a.recent[i].Resend(a.bt.handler.AggregateType(), a.id); got != want {
				t.Errorf("%s: duplicate of %s got\n%+v, want\n%+v", what, want.CommandID, got, want)
			}
		}
	}
	a, err := reg.decodeSnapshot("account/a1", data)
	if err != nil {
		t.Fatal(err)
	}
	check("v1", a)
	if a.version != 2 || a.state.(account.Account).Balance != 5 {
		t.Fatalf("v1 snapshot restored as version %d, state %+v", a.version, a.state)
	}
	// The next snapshot is written in v2, and through the fast path.
	v2, err := reg.encodeSnapshot(a)
	if err != nil {
		t.Fatal(err)
	}
	if fp, _ := schemas.Fingerprint(v2); fp != reg.snapshot.Fingerprint() {
		t.Fatalf("re-written snapshot has fingerprint %#x, want the current one", fp)
	}
	if len(v2) >= len(data) {
		t.Errorf("v2 snapshot is %d bytes, the v1 one %d: not smaller", len(v2), len(data))
	}
	b, err := reg.decodeSnapshot("account/a1", v2)
	if err != nil {
		t.Fatal(err)
	}
	check("v2", b)
}

// FuzzDecodeEventFast: on any input the hand-written event envelope decoder
// succeeds exactly when the generic one does, with the same value (known
// type names interned or not), and never panics.
func FuzzDecodeEventFast(f *testing.F) {
	r := envRegistry(f)
	names := map[string]string{"account": "account", "MoneyDeposited": "MoneyDeposited"}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20; i++ {
		e := wire.Event{AggregateType: randString(rng), AggregateID: randString(rng), Version: randLong(rng),
			EventType: randString(rng), CommandID: randString(rng), TimestampMillis: randLong(rng), Payload: randBytes(rng)}
		if i%2 == 0 {
			e.AggregateType, e.EventType = "account", "MoneyDeposited"
		}
		f.Add(r.fast.encodeEvent(&e)[schemas.HeaderLen:])
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		data := append(append([]byte{}, r.fast.eventHdr[:]...), body...)
		var want wire.Event
		errGeneric := r.event.Decode(data, &want)
		for _, n := range []map[string]string{nil, names} {
			got, ok := r.fast.decodeEvent(data, n)
			if ok != (errGeneric == nil) {
				t.Fatalf("fast ok %v, generic error %v", ok, errGeneric)
			}
			if ok && !reflect.DeepEqual(got, want) {
				t.Fatalf("fast %+v, generic %+v", got, want)
			}
		}
		if _, ok := r.fast.decodeEvent(append([]byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}, body...), nil); ok {
			t.Fatal("decoded an envelope of another fingerprint")
		}
	})
}

// TestDecodeEventFastRandom: random envelopes decode by hand to what the
// generic codec decodes.
func TestDecodeEventFastRandom(t *testing.T) {
	r := envRegistry(t)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 2000; i++ {
		e := wire.Event{AggregateType: randString(rng), AggregateID: randString(rng), Version: randLong(rng),
			EventType: randString(rng), CommandID: randString(rng), TimestampMillis: randLong(rng), Payload: randBytes(rng)}
		data := r.fast.encodeEvent(&e)
		var want wire.Event
		if err := r.event.Decode(data, &want); err != nil {
			t.Fatal(err)
		}
		got, ok := r.fast.decodeEvent(data, nil)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("fast %+v (%v), generic %+v", got, ok, want)
		}
	}
}
