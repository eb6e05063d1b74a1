package schemas

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
)

func mapFS(files map[string]string) fs.FS {
	m := fstest.MapFS{}
	for name, text := range files {
		m[name] = &fstest.MapFile{Data: []byte(text)}
	}
	return m
}

func TestCodecLookup(t *testing.T) {
	all := allSets(t)
	for _, name := range []string{"kcqrs.example.account.Deposit", "Deposit"} {
		c, err := all.Codec(name)
		if err != nil || c.Name() != "kcqrs.example.account.Deposit" {
			t.Errorf("Codec(%q) = %v, %v", name, c, err)
		}
	}
	if _, err := all.Codec("Nope"); err == nil || !strings.Contains(err.Error(), `no record named "Nope"`) {
		t.Errorf("unknown name: err = %v", err)
	}
	// A nested type is not a top-level record of the set.
	if _, err := all.Codec("kcqrs.RecentCommand"); err == nil {
		t.Error("kcqrs.RecentCommand found")
	}
	if _, ok := all.ByFingerprint(12345); ok {
		t.Error("ByFingerprint(12345) found a codec")
	}

	other, err := Load(mapFS(map[string]string{
		"s/Deposit.avsc": `{"type":"record","name":"Deposit","namespace":"other","fields":[{"name":"cents","type":"long"}]}`,
	}), "s")
	if err != nil {
		t.Fatal(err)
	}
	merged, err := Merge(all, other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = merged.Codec("Deposit")
	if err == nil || !strings.Contains(err.Error(), "ambiguous") ||
		!strings.Contains(err.Error(), "kcqrs.example.account.Deposit, other.Deposit") {
		t.Errorf("ambiguous name: err = %v", err)
	}
	if c, err := merged.Codec("other.Deposit"); err != nil || c.ShortName() != "Deposit" {
		t.Errorf("Codec(other.Deposit) = %v, %v", c, err)
	}
	if got := len(merged.Codecs()); got != len(all.Names())+1 {
		t.Errorf("merged set has %d codecs", got)
	}
	// Merging a set with itself is harmless; two different definitions of one
	// record are not.
	if _, err := Merge(all, all); err != nil {
		t.Errorf("Merge(all, all): %v", err)
	}
	env1, _ := LoadEnvelopes()
	env2, _ := LoadEnvelopes()
	if _, err := Merge(env1, env2); err == nil || !strings.Contains(err.Error(), "already defined") {
		t.Errorf("Merge of two loads: err = %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	const reply = `{"type":"record","name":"Reply","namespace":"kcqrs","fields":[{"name":"code","type":"string"}]}`
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"empty dir", map[string]string{"d/readme.txt": "x"}, []string{"no .avsc files in d"}},
		{"invalid JSON", map[string]string{"d/A.avsc": `{"type":`}, []string{"d/A.avsc"}},
		{"invalid schema", map[string]string{"d/A.avsc": `{"type":"record","name":"A","fields":[{"name":"x","type":"nope"}]}`}, []string{"d/A.avsc", "nope"}},
		{"not a record", map[string]string{"d/E.avsc": `{"type":"enum","name":"E","symbols":["A"]}`}, []string{"d/E.avsc", "holds a enum E"}},
		{"every bad file is reported", map[string]string{
			"d/A.avsc": `{"type":`,
			"d/B.avsc": `"string"`,
		}, []string{"d/A.avsc", "d/B.avsc"}},
		{"duplicate record", map[string]string{
			"d/A.avsc": reply,
			"d/B.avsc": reply,
		}, []string{"d/B.avsc: record kcqrs.Reply is already defined in d/A.avsc"}},
		{"inline copy differs", map[string]string{
			"d/Reply.avsc": reply,
			"d/Holder.avsc": `{"type":"record","name":"Holder","namespace":"kcqrs","fields":[
				{"name":"reply","type":{"type":"record","name":"Reply","fields":[{"name":"code","type":"long"}]}}]}`,
		}, []string{"kcqrs.Reply differs from its definition"}},
		{"inline copy differs in a default", map[string]string{
			"d/Reply.avsc": reply,
			"d/Holder.avsc": `{"type":"record","name":"Holder","namespace":"kcqrs","fields":[
				{"name":"reply","type":{"type":"record","name":"Reply","fields":[{"name":"code","type":"string","default":""}]}}]}`,
		}, []string{"kcqrs.Reply differs from its definition"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(mapFS(tc.files), "d")
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
		})
	}
}

func TestInlineCopyMayDifferInDocs(t *testing.T) {
	_, err := Load(mapFS(map[string]string{
		"d/Reply.avsc": `{"type":"record","name":"Reply","namespace":"kcqrs","doc":"one","fields":[{"name":"code","type":"string"}]}`,
		"d/Holder.avsc": `{"type":"record","name":"Holder","namespace":"kcqrs","fields":[
			{"name":"reply","type":{"type":"record","name":"Reply","doc":"two","fields":[{"name":"code","type":"string","doc":"x"}]}}]}`,
	}), "d")
	if err != nil {
		t.Fatal(err)
	}
}

// The package's own Parsing Canonical Form must agree with goavro's for every
// embedded schema and for the shapes the reflection mapping supports (Load
// enforces it; this shows the check passes for valid schemas, recursive ones
// included).
func TestCanonicalForm(t *testing.T) {
	s, err := Load(mapFS(map[string]string{
		"d/Kinds.avsc": kindsSchema,
		"d/List.avsc": `{"type":"record","name":"List","namespace":"x.y","fields":[
			{"name":"value","type":"long"},
			{"name":"next","type":["null","x.y.List"],"default":null},
			{"name":"other","type":["null",{"type":"record","name":"z.Node","fields":[{"name":"up","type":["null","x.y.List"]}]}]}]}`,
	}), "d")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append(s.Codecs(), allSets(t).Codecs()...) {
		if got := c.Avro().CanonicalSchema(); got != c.Schema() {
			t.Errorf("%s:\n ours   %s\n goavro %s", c.Name(), c.Schema(), got)
		}
		if c.Fingerprint() != c.Avro().Rabin {
			t.Errorf("%s: fingerprint %#x, goavro's %#x", c.Name(), c.Fingerprint(), c.Avro().Rabin)
		}
	}
}

func TestRabin(t *testing.T) {
	// From goavro's documentation: the single-object encoding of int 3 is
	// c3 01 8f 5c 39 3f 1a d5 75 72 06.
	if got := rabin([]byte(`"int"`)); got != 0x7275d51a3f395c8f {
		t.Errorf(`rabin("int") = %#x`, got)
	}
}

// Where goavro's canonical form departs from the specification, the
// fingerprint follows the specification.
func TestFingerprintFollowsTheSpecification(t *testing.T) {
	s, err := Load(mapFS(map[string]string{
		"d/A.avsc": `{"type":"record","name":"A","namespace":"kcqrs","fields":[
			{"name":"b","type":{"type":"record","name":"B","namespace":"kcqrs","fields":[]}},
			{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}}]}`,
	}), "d")
	if err != nil {
		t.Fatal(err)
	}
	c := mustCodec(t, s, "A")
	const want = `{"name":"kcqrs.A","type":"record","fields":[{"name":"b","type":{"name":"kcqrs.B","type":"record","fields":[]}},{"name":"at","type":"long"}]}`
	if c.Schema() != want {
		t.Errorf("Schema() = %s", c.Schema())
	}
	if c.Fingerprint() != rabin([]byte(want)) {
		t.Errorf("fingerprint %#x", c.Fingerprint())
	}
	if c.Avro().Rabin == c.Fingerprint() {
		t.Errorf("goavro got it right (%s); update the docs", c.Avro().CanonicalSchema())
	}
}

func TestEveryEmbeddedTypeHasDocs(t *testing.T) {
	for _, c := range allSets(t).Codecs() {
		seen := map[*avroType]bool{}
		var walk func(t2 *avroType)
		walk = func(a *avroType) {
			if seen[a] {
				return
			}
			seen[a] = true
			if (a.kind == kindRecord || a.kind == kindEnum) && a.doc == "" {
				t.Errorf("%s: %s has no doc", c.Name(), a.name)
			}
			for _, f := range a.fields {
				if f.doc == "" {
					t.Errorf("%s: field %s.%s has no doc", c.Name(), a.name, f.name)
				}
				walk(f.typ)
			}
			if a.items != nil {
				walk(a.items)
			}
		}
		walk(c.schema)
	}
}
