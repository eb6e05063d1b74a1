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
		data, err := c.Encode(s.value)
		if err != nil {
			t.Fatal(err)
		}
		checkGolden(t, s.name+".hex", hex.Dump(data))
		js, err := c.EncodeJSON(s.value)
		if err != nil {
			t.Fatal(err)
		}
		checkGolden(t, s.name+".json", string(js)+"\n")

		// The golden bytes decode to the known value.
		if *update {
			continue
		}
		p := newPtr(s.value)
		if err := c.Decode(data, p); err != nil {
			t.Fatal(err)
		}
	}
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
