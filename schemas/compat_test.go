package schemas

import (
	"strings"
	"testing"
)

func loadMap(t *testing.T, files map[string]string) *Set {
	t.Helper()
	s, err := Load(mapFS(files), "d")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestForwardCompatibility: forward (and full) mode fails when the previous
// release cannot read the current schema's data, which backward mode
// allows; a field added with a default passes every mode.
func TestForwardCompatibility(t *testing.T) {
	v1 := recordNamed("E", `{"name":"a","type":"long"}`)
	for _, tc := range []struct {
		name, cur          string
		backward, forward  bool // passes
		wantForwardProblem string
	}{
		{"field with a default", `{"name":"a","type":"long"},{"name":"b","type":"string","default":"x"}`, true, true, ""},
		{"field removed that old code needs", `{"name":"b","type":"string","default":"x"}`, true, false, "E.a: field is missing in the writer's schema and has no default"},
		{"widened", `{"name":"a","type":"double"}`, true, false, "E.a: writer's double cannot be read as long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := loadMap(t, map[string]string{"d/E.avsc": recordNamed("E", tc.cur), "d/history/E.v1.avsc": v1})
			if err := s.CheckCompatibility(Backward); (err == nil) != tc.backward {
				t.Errorf("backward: %v", err)
			}
			err := s.CheckCompatibility(Forward)
			if (err == nil) != tc.forward {
				t.Fatalf("forward: %v", err)
			}
			if err != nil && (!strings.Contains(err.Error(), tc.wantForwardProblem) || !strings.Contains(err.Error(), "previous release v1 (d/history/E.v1.avsc)")) {
				t.Errorf("forward: %v, want %q", err, tc.wantForwardProblem)
			}
			if full := s.CheckCompatibility(Full); (full == nil) != (tc.backward && tc.forward) {
				t.Errorf("full: %v", full)
			}
		})
	}
	renamed := loadMap(t, map[string]string{"d/F.avsc": recordNamed("F", `{"name":"a","type":"long"}`), "d/history/E.v1.avsc": v1})
	if err := renamed.CheckCompatibility(Forward); err == nil || !strings.Contains(err.Error(), "t.E v1 (d/history/E.v1.avsc) has no current schema") {
		t.Errorf("forward with a renamed record: %v", err)
	}
	if _, err := ParseCompatibility("FULL"); err != nil {
		t.Error(err)
	}
	if _, err := ParseCompatibility("transitive"); err == nil {
		t.Error("ParseCompatibility accepted transitive")
	}
}

// TestRenameWithoutAliasWarns: dropping a field and adding one with a
// default in the same step is reported (the old values would be lost
// silently) unless the new field has an alias or the drop is acknowledged.
func TestRenameWithoutAliasWarns(t *testing.T) {
	v1 := recordNamed("E", `{"name":"a","type":"long"},{"name":"owner","type":"string"}`)
	for _, tc := range []struct {
		name, cur string
		warn      bool
	}{
		{"rename without alias", recordNamed("E", `{"name":"a","type":"long"},{"name":"holder","type":"string","default":""}`), true},
		{"rename with alias", recordNamed("E", `{"name":"a","type":"long"},{"name":"holder","type":"string","default":"","aliases":["owner"]}`), false},
		{"acknowledged drop", `{"type":"record","name":"E","namespace":"t","kcqrs.dropped":["owner"],"fields":[{"name":"a","type":"long"},{"name":"holder","type":"string","default":""}]}`, false},
		{"added only", recordNamed("E", `{"name":"a","type":"long"},{"name":"owner","type":"string"},{"name":"holder","type":"string","default":""}`), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := loadMap(t, map[string]string{"d/E.avsc": tc.cur, "d/history/E.v1.avsc": v1})
			if err := s.Check(); err != nil {
				t.Fatalf("backward check: %v", err)
			}
			w := s.RenameWarnings()
			if (len(w) > 0) != tc.warn {
				t.Fatalf("warnings: %q", w)
			}
			if tc.warn && (!strings.Contains(w[0], `drops "owner"`) || !strings.Contains(w[0], `adds "holder"`) || !strings.Contains(w[0], `"aliases"`)) {
				t.Fatalf("warning: %s", w[0])
			}
		})
	}
}
