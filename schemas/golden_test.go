package schemas

import (
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGolden pins the bytes of every record: the single-object encoding (as a
// hex dump) and the JSON encoding of a known value, and the fingerprints.
// A failure means a schema changed in a way that changes its binary form:
// data already on Kafka would no longer decode with the new codec. If that
// is intended, run `go test ./schemas -run TestGolden -update` and review
// the diff.
func TestGolden(t *testing.T) {
	all := allSets(t)
	var fps strings.Builder
	for _, c := range all.Codecs() {
		fmt.Fprintf(&fps, "%#016x %s\n", c.Fingerprint(), c.Name())
	}
	checkGolden(t, "fingerprints.txt", fps.String())

	for _, s := range samples() {
		c := mustCodec(t, all, s.name)
		native, exact := goldenNative(t, all, c, s.value)
		data, err := c.avro.BinaryFromNative(append([]byte(nil), c.header[:]...), native)
		if err != nil {
			t.Fatal(err)
		}
		checkGolden(t, s.name+".hex", hex.Dump(data))
		raw, err := c.avro.TextualFromNative(nil, native)
		if err != nil {
			t.Fatal(err)
		}
		js, err := orderJSON(nil, c.schema, raw)
		if err != nil {
			js = raw
		}
		checkGolden(t, s.name+".json", string(js)+"\n")

		// The golden bytes decode to the known value.
		if *update {
			continue
		}
		if !exact {
			if _, err := c.DecodeNative(data); err != nil {
				t.Fatal(err)
			}
			continue
		}
		p := newPtr(s.value)
		if err := c.Decode(data, p); err != nil {
			t.Fatal(err)
		}
	}
}

// goldenNative is the native form of a sample under the record's current
// schema. A sample written for an older version (the current schema added a
// field with a default since: the README's "Changing your schemas") is
// encoded with that version and resolved, defaults filled in, so changing a
// schema needs no edit of samples(); exact says the sample's Go type matches
// the current schema.
func goldenNative(t *testing.T, all *Set, c *Codec, v any) (native any, exact bool) {
	t.Helper()
	n, err := c.ToNative(v)
	if err == nil {
		return n, true
	}
	vs, verr := all.Versions(c.Name())
	if verr != nil {
		t.Fatal(verr)
	}
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i] == c {
			continue
		}
		old, oerr := vs[i].ToNative(v)
		if oerr != nil {
			continue
		}
		r, rerr := c.Resolve(vs[i], old)
		if rerr != nil {
			t.Fatal(rerr)
		}
		return r, false
	}
	t.Fatalf("sample of %s fits neither the current schema (%v) nor an older version", c.Name(), err)
	return nil, false
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s changed; a schema change altered the encoding (see TestGolden's doc).\n got:\n%s\nwant:\n%s", path, got, want)
	}
}
