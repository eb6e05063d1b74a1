package schemas

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// renameMoneyDeposited is the upcaster of the accountv2 fixture: v2 renamed
// the event MoneyDeposited to FundsDeposited, which Avro resolution cannot
// express (record names must match).
var renameMoneyDeposited = Upcaster{Name: "MoneyDeposited", Version: 1, Up: func(r Record) ([]Record, error) {
	return []Record{{Name: "FundsDeposited", Version: 1, Fields: r.Fields}}, nil
}}

// evolvedSets are the sets whose history the golden tests pin: the embedded
// ones and testdata/accountv2, version 2 of the account schemas (a field
// with a default added to Account, AccountOpened and OpenAccount; the event
// MoneyDeposited renamed FundsDeposited).
func evolvedSets(t testing.TB) map[string]*Upcasting {
	t.Helper()
	out := map[string]*Upcasting{}
	for name, load := range map[string]func() (*Set, error){
		"kcqrs": LoadEnvelopes, "account": LoadAccount, "folder": LoadFolder,
		"accountv2": func() (*Set, error) { return Load(os.DirFS("testdata"), "accountv2") },
	} {
		s, err := load()
		if err != nil {
			t.Fatal(err)
		}
		var ups []Upcaster
		if name == "accountv2" {
			ups = append(ups, renameMoneyDeposited)
		}
		u, err := s.Upcasting(ups...)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = u
	}
	return out
}

// sampleNative builds a deterministic value of t in goavro's native form,
// for golden files of old schema versions (whose Go types no longer exist).
func sampleNative(t *avroType, name string, depth int) any {
	switch t.kind {
	case kindNull:
		return nil
	case kindBoolean:
		return true
	case kindInt:
		return int32(7)
	case kindLong:
		return int64(42)
	case kindFloat:
		return float32(1.5)
	case kindDouble:
		return 2.5
	case kindBytes:
		return []byte{1, 2, 0xff}
	case kindString:
		return name
	case kindEnum:
		return t.symbols[0]
	case kindFixed:
		return make([]byte, t.size)
	case kindArray:
		return []any{sampleNative(t.items, name, depth+1)}
	case kindMap:
		return map[string]any{"k": sampleNative(t.values, name, depth+1)}
	case kindUnion:
		for _, b := range t.branches {
			if b.kind != kindNull && depth < 3 {
				return wrapUnion(b, sampleNative(b, name, depth+1))
			}
		}
		return nil
	case kindRecord:
		m := map[string]any{}
		for _, f := range t.fields {
			m[f.name] = sampleNative(f.typ, f.name, depth+1)
		}
		return m
	}
	return nil
}

// TestHistoryGolden: for every old schema version (a history/ file) a value
// written with it is checked in under testdata/golden/history, and must
// decode, through resolution and upcasters, to the checked-in current
// values. -update creates the bytes of a new history file but never rewrites
// existing ones: they stand for data already on Kafka.
func TestHistoryGolden(t *testing.T) {
	count := 0
	for setName, u := range evolvedSets(t) {
		for _, full := range sortedKeys(u.set.versions) {
			for _, w := range u.set.versions[full] {
				if w == u.set.current(full) {
					continue
				}
				count++
				base := filepath.Join("testdata", "golden", "history", setName, fmt.Sprintf("%s.v%d", w.short, w.version))
				data := readOrWriteHistoryBytes(t, base+".hex", w)
				recs, err := u.Decode(data)
				if err != nil {
					t.Errorf("%s: %v", base, err)
					continue
				}
				var b strings.Builder
				for _, r := range recs {
					cur := u.set.current(u.set.versions[fullName(u.set, r.Name)][0].name)
					raw, err := cur.avro.TextualFromNative(nil, r.Fields)
					if err != nil {
						t.Fatalf("%s: %v", base, err)
					}
					js, err := orderJSON(nil, cur.schema, raw)
					if err != nil {
						t.Fatalf("%s: %v", base, err)
					}
					fmt.Fprintf(&b, "%s v%d %s\n", r.Name, r.Version, js)
				}
				checkGolden(t, filepath.Join("history", setName, fmt.Sprintf("%s.v%d.current.txt", w.short, w.version)), b.String())
			}
		}
	}
	if count == 0 {
		t.Fatal("no history versions found; testdata/accountv2 has some")
	}
}

func fullName(s *Set, name string) string {
	vs, err := s.Versions(name)
	if err != nil {
		return name
	}
	return vs[0].name
}

func readOrWriteHistoryBytes(t *testing.T, file string, w *Codec) []byte {
	t.Helper()
	dump, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) && *update {
		native := sampleNative(w.schema, w.short, 0)
		data, err := w.avro.BinaryFromNative(w.header[:], native)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(hex.EncodeToString(data)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return data
	}
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	data, err := hex.DecodeString(strings.TrimSpace(string(dump)))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return data
}

// v2 Go types of the accountv2 fixture.
type accountV2 struct {
	Status   string `avro:"status"`
	Owner    string `avro:"owner"`
	Currency string `avro:"currency"`
	Balance  int64  `avro:"balance"`
	Channel  string `avro:"channel"`
}
type accountOpenedV2 struct {
	Owner    string `avro:"owner"`
	Currency string `avro:"currency"`
	Channel  string `avro:"channel"`
}
type openAccountV2 = accountOpenedV2
type fundsDeposited = moneyDeposited

// TestHistoryGoldenGoValues: the checked-in v1 bytes decode to the expected
// v2 Go values: defaults fill the added field, the upcaster renames the
// event, and Codec.Decode alone resolves what needs no upcaster.
func TestHistoryGoldenGoValues(t *testing.T) {
	u := evolvedSets(t)["accountv2"]
	golden := func(name string) []byte {
		return readOrWriteHistoryBytes(t, filepath.Join("testdata", "golden", "history", "accountv2", name+".hex"), nil)
	}
	for _, tc := range []struct {
		file string
		want any
	}{
		{"Account.v1", accountV2{Status: "status", Owner: "owner", Currency: "currency", Balance: 42, Channel: "unknown"}},
		{"AccountOpened.v1", accountOpenedV2{Owner: "owner", Currency: "currency", Channel: "unknown"}},
		{"OpenAccount.v1", openAccountV2{Owner: "owner", Currency: "currency", Channel: "unknown"}},
	} {
		c := mustCodec(t, u.set, strings.TrimSuffix(tc.file, ".v1"))
		p := newPtr(tc.want)
		if err := c.Decode(golden(tc.file), p); err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if got := deref(p); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.file, got, tc.want)
		}
	}

	// A renamed event needs the upcaster: Codec.Decode of the new name
	// refuses the old fingerprint.
	data := golden("MoneyDeposited.v1")
	var fd fundsDeposited
	var fe *FingerprintError
	if err := mustCodec(t, u.set, "FundsDeposited").Decode(data, &fd); !errors.As(err, &fe) {
		t.Fatalf("FundsDeposited.Decode(MoneyDeposited v1) = %v, want a *FingerprintError", err)
	}
	recs, err := u.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Name != "FundsDeposited" || recs[0].Version != 1 {
		t.Fatalf("upcast = %+v", recs)
	}
	if err := mustCodec(t, u.set, "FundsDeposited").FromNative(recs[0].Fields, &fd); err != nil {
		t.Fatal(err)
	}
	if want := (fundsDeposited{Amount: 42, Balance: 42}); fd != want {
		t.Fatalf("got %+v, want %+v", fd, want)
	}
}

// TestSchemasCompatible is what `make schemas-check` runs: every old version
// of every embedded record, and of the accountv2 fixture with its upcaster,
// is readable by the current schemas.
func TestSchemasCompatible(t *testing.T) {
	for name, u := range evolvedSets(t) {
		if err := u.Check(); err != nil {
			t.Errorf("%s: old data would be unreadable:\n%v", name, err)
		}
	}
}

func recordNamed(name, fields string) string {
	return `{"type":"record","name":"` + name + `","namespace":"t","fields":[` + fields + `]}`
}

// TestCheckShowsWhatBroke: an incompatible new version fails the check, and
// the message names the versions, the files and the field.
func TestCheckShowsWhatBroke(t *testing.T) {
	fsys := mapFS(map[string]string{
		"d/E.avsc":            recordNamed("E", `{"name":"a","type":"int"},{"name":"b","type":"string"}`),
		"d/history/E.v1.avsc": recordNamed("E", `{"name":"a","type":"long"}`),
		"d/history/G.v1.avsc": recordNamed("G", ``),
	})
	s, err := Load(fsys, "d")
	if err != nil {
		t.Fatal(err)
	}
	err = s.Check()
	if err == nil {
		t.Fatal("Check passed an incompatible history")
	}
	for _, want := range []string{
		"t.E v1 (d/history/E.v1.avsc) cannot be read as v2 (d/E.avsc)",
		"cannot resolve E.a: writer's long cannot be read as int",
		"cannot resolve E.b: field is missing in the writer's schema and has no default",
		"t.G v1 (d/history/G.v1.avsc): no current schema and no upcaster reads it",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check error does not say %q:\n%v", want, err)
		}
	}
	// Codec.Decode of v1 data gives the same reason, as a *ResolveError.
	old, _ := s.Versions("E")
	data, _ := old[0].avro.BinaryFromNative(old[0].header[:], map[string]any{"a": int64(1)})
	var v struct {
		A int32  `avro:"a"`
		B string `avro:"b"`
	}
	var re *ResolveError
	if err := mustCodec(t, s, "E").Decode(data, &v); !errors.As(err, &re) || re.Path != "E.a" {
		t.Fatalf("Decode = %v, want a *ResolveError at E.a", err)
	}
}

func TestLoadHistoryErrors(t *testing.T) {
	cur := recordNamed("E", `{"name":"a","type":"int"}`)
	for _, tc := range []struct {
		files map[string]string
		err   string
	}{
		{map[string]string{"d/E.avsc": cur, "d/history/E.avsc": cur}, "a history file is named Record.vN.avsc"},
		{map[string]string{"d/E.avsc": cur, "d/history/E.v0.avsc": cur}, "a history file is named Record.vN.avsc"},
		{map[string]string{"d/E.avsc": cur, "d/history/F.v1.avsc": cur}, "holds record t.E, but the file name says F"},
		{map[string]string{"d/E.avsc": cur, "d/history/E.v2.avsc": cur}, "versions of t.E must be 1, 2, 3"},
		{map[string]string{"d/E.avsc": cur, "d/history/E.v1.avsc": `{"type":"record"}`}, "d/history/E.v1.avsc"},
	} {
		_, err := Load(mapFS(tc.files), "d")
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: err = %v, want %q", tc.files, err, tc.err)
		}
	}
}

// TestVersions: history files are versions 1..N and the current file N+1;
// old fingerprints are found by ByFingerprint and decoded by the current
// codec.
func TestVersions(t *testing.T) {
	fsys := mapFS(map[string]string{
		"d/E.avsc":            recordNamed("E", `{"name":"a","type":"long"},{"name":"c","type":"string","default":"x"}`),
		"d/history/E.v1.avsc": recordNamed("E", `{"name":"a","type":"int"}`),
		"d/history/E.v2.avsc": recordNamed("E", `{"name":"a","type":"long"}`),
	})
	s, err := Load(fsys, "d")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := s.Versions("E")
	if err != nil {
		t.Fatal(err)
	}
	cur := mustCodec(t, s, "t.E")
	if len(vs) != 3 || vs[2] != cur || cur.Version() != 3 || vs[0].Version() != 1 || vs[0].File() != "d/history/E.v1.avsc" {
		t.Fatalf("versions = %v (current v%d)", vs, cur.Version())
	}
	if len(s.Names()) != 1 {
		t.Fatalf("history versions must not be current records: %v", s.Names())
	}
	type e struct {
		A int64  `avro:"a"`
		C string `avro:"c"`
	}
	for i, native := range []map[string]any{{"a": int32(5)}, {"a": int64(5)}} {
		w := vs[i]
		if got, ok := s.ByFingerprint(w.Fingerprint()); !ok || got != w {
			t.Fatalf("ByFingerprint(v%d) = %v", i+1, got)
		}
		data, err := w.avro.BinaryFromNative(w.header[:], native)
		if err != nil {
			t.Fatal(err)
		}
		var got e
		if err := cur.Decode(data, &got); err != nil {
			t.Fatalf("v%d: %v", i+1, err)
		}
		if got != (e{A: 5, C: "x"}) {
			t.Fatalf("v%d decoded as %+v", i+1, got)
		}
	}
	if _, err := Merge(s, s); err != nil {
		t.Fatalf("merging a set with itself: %v", err)
	}
	m, err := Merge(s)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Versions("E"); len(got) != 3 {
		t.Fatalf("Merge lost versions: %v", got)
	}
	if _, ok := m.ByFingerprint(vs[0].Fingerprint()); !ok {
		t.Fatal("Merge lost the old fingerprints")
	}
}

// TestUpcasting: a chain of upcasters, with resolution before each step,
// renames, splits, drops; bad upcasters are refused with their reason.
func TestUpcasting(t *testing.T) {
	fsys := mapFS(map[string]string{
		// Old: Moved{from,to}, v1 with int amounts, v2 long. Now: Left and
		// Arrived; Moved v3 does not exist.
		"d/history/Moved.v1.avsc":   recordNamed("Moved", `{"name":"from","type":"string"},{"name":"to","type":"string"},{"name":"n","type":"int"}`),
		"d/history/Moved.v2.avsc":   recordNamed("Moved", `{"name":"from","type":"string"},{"name":"to","type":"string"},{"name":"n","type":"long"},{"name":"note","type":"string","default":"none"}`),
		"d/Left.avsc":               recordNamed("Left", `{"name":"place","type":"string"},{"name":"n","type":"long"}`),
		"d/Arrived.avsc":            recordNamed("Arrived", `{"name":"place","type":"string"},{"name":"note","type":"string"},{"name":"extra","type":"int","default":1}`),
		"d/history/Arrived.v1.avsc": recordNamed("Arrived", `{"name":"place","type":"string"},{"name":"note","type":"string"}`),
		"d/history/Noise.v1.avsc":   recordNamed("Noise", ``),
	})
	s, err := Load(fsys, "d")
	if err != nil {
		t.Fatal(err)
	}
	var sawV2 map[string]any
	split := Upcaster{Name: "Moved", Version: 2, Up: func(r Record) ([]Record, error) {
		sawV2 = r.Fields
		return []Record{
			{Name: "Left", Version: 1, Fields: map[string]any{"place": r.Fields["from"], "n": r.Fields["n"]}},
			{Name: "Arrived", Version: 1, Fields: map[string]any{"place": r.Fields["to"], "note": r.Fields["note"]}},
		}, nil
	}}
	drop := Upcaster{Name: "Noise", Version: 1, Up: func(Record) ([]Record, error) { return nil, nil }}
	if err := s.Check(); err == nil {
		t.Fatal("Check without upcasters must report Moved and Noise")
	}
	u, err := s.Upcasting(split, drop)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Check(); err != nil {
		t.Fatalf("Check with upcasters: %v", err)
	}
	vs, _ := s.Versions("Moved")
	data, _ := vs[0].avro.BinaryFromNative(vs[0].header[:], map[string]any{"from": "a", "to": "b", "n": int32(3)})
	recs, err := u.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	// v1 was resolved to v2 (int to long, note defaulted) before the
	// upcaster ran; the split outputs were resolved to their current schemas.
	if want := map[string]any{"from": "a", "to": "b", "n": int64(3), "note": "none"}; !reflect.DeepEqual(sawV2, want) {
		t.Fatalf("the v2 upcaster saw %#v, want %#v", sawV2, want)
	}
	want := []Record{
		{Name: "Left", Version: 1, Fields: map[string]any{"place": "a", "n": int64(3)}},
		{Name: "Arrived", Version: 2, Fields: map[string]any{"place": "b", "note": "none", "extra": int32(1)}},
	}
	if !reflect.DeepEqual(recs, want) {
		t.Fatalf("got  %#v\nwant %#v", recs, want)
	}
	nv, _ := s.Versions("Noise")
	if recs, err := u.Decode(nv[0].header[:]); err != nil || len(recs) != 0 {
		t.Fatalf("dropped event: %v, %v", recs, err)
	}

	// Unknown fingerprints are a typed error.
	var ue *UnknownSchemaError
	if _, err := u.Decode([]byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}); !errors.As(err, &ue) {
		t.Fatalf("unknown fingerprint: %v", err)
	}

	// Bad upcasters.
	noop := func(Record) ([]Record, error) { return nil, nil }
	for _, tc := range []struct {
		up  Upcaster
		err string
	}{
		{Upcaster{Name: "Nope", Version: 1, Up: noop}, `no record named "Nope"`},
		{Upcaster{Name: "Moved", Version: 3, Up: noop}, "t.Moved has versions 1 to 2"},
		{Upcaster{Name: "Left", Version: 1, Up: noop}, "that is the current version"},
		{Upcaster{Name: "Moved", Version: 1}, "nil Up"},
	} {
		if _, err := s.Upcasting(tc.up); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s v%d: err = %v, want %q", tc.up.Name, tc.up.Version, err, tc.err)
		}
	}
	if _, err := s.Upcasting(drop, drop); err == nil || !strings.Contains(err.Error(), "registered twice") {
		t.Errorf("duplicate upcaster: %v", err)
	}

	// Upcasters that go backwards or loop are stopped.
	back := Upcaster{Name: "Moved", Version: 2, Up: func(r Record) ([]Record, error) { return []Record{{Name: "Moved", Version: 1, Fields: r.Fields}}, nil }}
	u2, _ := s.Upcasting(back)
	if _, err := u2.Decode(data); err == nil || !strings.Contains(err.Error(), "must move forward") {
		t.Errorf("backwards upcaster: %v", err)
	}
	loopA := Upcaster{Name: "Moved", Version: 1, Up: func(r Record) ([]Record, error) {
		return []Record{{Name: "Noise", Version: 1, Fields: map[string]any{}}}, nil
	}}
	loopB := Upcaster{Name: "Noise", Version: 1, Up: func(r Record) ([]Record, error) {
		return []Record{{Name: "Moved", Version: 1, Fields: map[string]any{"from": "", "to": "", "n": int32(0)}}}, nil
	}}
	u3, _ := s.Upcasting(loopA, loopB)
	if _, err := u3.Decode(data); err == nil || !strings.Contains(err.Error(), "loop") {
		t.Errorf("looping upcasters: %v", err)
	}
	failing := Upcaster{Name: "Noise", Version: 1, Up: func(Record) ([]Record, error) { return nil, errors.New("boom") }}
	u4, _ := s.Upcasting(failing)
	if _, err := u4.Decode(nv[0].header[:]); err == nil || !strings.Contains(err.Error(), "upcaster t.Noise v1: boom") {
		t.Errorf("failing upcaster: %v", err)
	}

}

// TestReleasedStayKnown guards the step the compatibility check cannot see:
// a schema edited in place, without its released version copied to
// history/ first. testdata/released.txt lists every fingerprint ever
// released (-update adds the current ones and never removes a line); each
// must still be found, or data on Kafka written with it is unreadable.
func TestReleasedStayKnown(t *testing.T) {
	all := allSets(t)
	file := filepath.Join("testdata", "released.txt")
	text, err := os.ReadFile(file)
	if err != nil && !(errors.Is(err, os.ErrNotExist) && *update) {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	have := map[string]bool{}
	for _, line := range lines {
		if line == "" {
			continue
		}
		have[line] = true
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("%s: bad line %q", file, line)
		}
		fp, err := strconv.ParseUint(f[0], 0, 64)
		if err != nil {
			t.Fatalf("%s: bad line %q: %v", file, line, err)
		}
		name := f[1]
		if _, ok := all.ByFingerprint(fp); !ok {
			t.Errorf("%s was released with fingerprint %#016x, which no schema file has any more: restore the released version as history/%s.vN.avsc (N = its version) and keep the new one as %s.avsc",
				name, fp, shortName(name), shortName(name))
		}
	}
	if !*update {
		return
	}
	var add []string
	for _, full := range sortedKeys(all.versions) {
		for _, c := range all.versions[full] {
			line := fmt.Sprintf("%#016x %s", c.Fingerprint(), c.Name())
			if !have[line] {
				add = append(add, line)
				have[line] = true
			}
		}
	}
	if len(add) > 0 {
		out := strings.TrimSpace(string(text))
		if out != "" {
			out += "\n"
		}
		if err := os.WriteFile(file, []byte(out+strings.Join(add, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
