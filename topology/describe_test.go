package topology_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestDescribeGolden pins the topology description (text and Mermaid) the
// operators read: a change to topics, configs or ids shows up in review.
func TestDescribeGolden(t *testing.T) {
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	d := topology.Describe(topology.Config{StateDir: "/var/lib/kcqrs", Partitions: 8}, reg)
	for name, got := range map[string]string{"describe.txt": d.Text(), "describe.mmd": d.Mermaid()} {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./topology -run TestDescribeGolden -update)", err)
		}
		if got != string(want) {
			t.Errorf("%s differs from the golden file (rerun with -update if intended):\n%s", name, got)
		}
	}
}
