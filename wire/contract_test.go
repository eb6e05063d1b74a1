package wire_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
)

var update = flag.Bool("update", false, "rewrite the generated sections of docs/wire-contract.md")

const contractPath = "../docs/wire-contract.md"

// constant is a string constant found in the source.
type constant struct {
	pkg, name, value, doc string
}

// constants returns the string constants of the non-test files of dir whose
// names start with prefix, in source order, with their doc comments.
func constants(t *testing.T, dir, prefix string) []constant {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var out []constant
	for _, p := range pkgs {
		var files []string
		for name := range p.Files {
			files = append(files, name)
		}
		sort.Strings(files)
		for _, name := range files {
			for _, d := range p.Files[name].Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok || g.Tok != token.CONST {
					continue
				}
				for _, s := range g.Specs {
					vs := s.(*ast.ValueSpec)
					for i, id := range vs.Names {
						if !strings.HasPrefix(id.Name, prefix) || i >= len(vs.Values) {
							continue
						}
						lit, ok := vs.Values[i].(*ast.BasicLit)
						if !ok || lit.Kind != token.STRING {
							continue
						}
						v, _ := strconv.Unquote(lit.Value)
						doc := vs.Doc.Text()
						if doc == "" && len(g.Specs) == 1 {
							doc = g.Doc.Text()
						}
						out = append(out, constant{pkg: p.Name, name: id.Name, value: v, doc: strings.Join(strings.Fields(doc), " ")})
					}
				}
			}
		}
	}
	return out
}

var statusPrefix = regexp.MustCompile(`^\(([A-Z_]+)\)`)

// codesTable renders every reply code, and reports codes without a doc
// comment.
func codesTable(t *testing.T) string {
	var b strings.Builder
	b.WriteString("| Code | Status | Source | Meaning |\n|---|---|---|---|\n")
	for _, src := range []struct{ dir, label string }{
		{"../topology", "runtime"},
		{"../aggregates", "any aggregate"},
		{"../aggregates/account", "`account`"},
		{"../aggregates/folder", "`folder`"},
	} {
		for _, c := range constants(t, src.dir, "Code") {
			meaning := strings.TrimSpace(strings.TrimPrefix(c.doc, c.name))
			status := "REJECTED"
			if m := statusPrefix.FindStringSubmatch(meaning); m != nil {
				status, meaning = m[1], strings.TrimSpace(meaning[len(m[0]):])
			}
			meaning = strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(meaning, ":")), "is ")
			if meaning == "" {
				t.Errorf("%s.%s (%q) has no doc comment: say when it is answered (it becomes its entry in docs/wire-contract.md)", c.pkg, c.name, c.value)
			}
			fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", c.value, status, src.label, strings.ReplaceAll(meaning, "|", "\\|"))
		}
	}
	return b.String()
}

func topicsTable() string {
	var b strings.Builder
	b.WriteString("| Topic | Role | Same partition count as `commands` | Configs the processor sets when it creates it |\n|---|---|---|---|\n")
	for _, s := range topology.Defaults().Topics.Specs() {
		var cfgs []string
		for k, v := range s.Configs {
			cfgs = append(cfgs, fmt.Sprintf("`%s=%s`", k, *v))
		}
		sort.Strings(cfgs)
		if len(cfgs) == 0 {
			cfgs = []string{"-"}
		}
		co := "no"
		if s.CoPartitioned {
			co = "yes"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", s.Name, s.Role, co, strings.Join(cfgs, ", "))
	}
	return b.String()
}

// avsc is what the commands table shows of a schema file.
type avsc struct {
	Doc    string `json:"doc"`
	Fields []struct {
		Name string          `json:"name"`
		Type json.RawMessage `json:"type"`
		Doc  string          `json:"doc"`
	} `json:"fields"`
}

func commandsTable(t *testing.T) string {
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("| `kcqrs_aggregate_type` | `kcqrs_command_type` | JSON fields | What it does |\n|---|---|---|---|\n")
	for _, agg := range reg.AggregateTypes() {
		for _, cmd := range reg.CommandTypes(agg) {
			raw, err := os.ReadFile(filepath.Join("..", "schemas", agg, cmd+".avsc"))
			if err != nil {
				t.Fatal(err)
			}
			var s avsc
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Fatal(err)
			}
			var fields []string
			for _, f := range s.Fields {
				typ := strings.Trim(string(f.Type), `"`)
				fields = append(fields, fmt.Sprintf("`%s` (%s): %s", f.Name, typ, strings.TrimSuffix(f.Doc, ".")))
			}
			if len(fields) == 0 {
				fields = []string{"none: send `{}`"}
			}
			doc := strings.TrimSpace(strings.TrimPrefix(s.Doc, "Command:"))
			fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", agg, cmd, strings.ReplaceAll(strings.Join(fields, "; "), "|", "\\|"), strings.ReplaceAll(doc, "|", "\\|"))
		}
	}
	return b.String()
}

// TestWireContract: docs/wire-contract.md is current. Its generated tables
// (topics, commands, codes) match the code (-update rewrites them); every
// reply code has a doc comment; every header, status, content type and
// expected-version keyword of package wire appears in it.
func TestWireContract(t *testing.T) {
	raw, err := os.ReadFile(contractPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	sections := map[string]string{"topics": topicsTable(), "commands": commandsTable(t), "codes": codesTable(t)}
	names := []string{"topics", "commands", "codes"}
	for _, name := range names {
		begin, end := "<!-- BEGIN GENERATED "+name+" -->\n", "<!-- END GENERATED "+name+" -->"
		i, j := strings.Index(doc, begin), strings.Index(doc, end)
		if i < 0 || j < i {
			t.Fatalf("%s lacks the markers of the generated %s section", contractPath, name)
		}
		if got := doc[i+len(begin) : j]; got != sections[name] {
			if *update {
				doc = doc[:i+len(begin)] + sections[name] + doc[j:]
				continue
			}
			t.Errorf("the %s section of %s is stale; run go test ./wire -run TestWireContract -update\nwant:\n%s", name, contractPath, sections[name])
		}
	}
	if *update {
		if err := os.WriteFile(contractPath, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, prefix := range []string{"Header", "Status", "ContentType", "Expect"} {
		for _, c := range constants(t, ".", prefix) {
			if !strings.Contains(doc, "`"+c.value+"`") {
				t.Errorf("wire.%s (%q) is not documented in %s", c.name, c.value, contractPath)
			}
		}
	}
	// The limits a client can run into are stated with their values.
	for _, want := range []string{
		fmt.Sprintf("at most `--max-command-bytes` (default %d KiB, %s bytes)", topology.DefaultMaxCommandBytes>>10, thousands(topology.DefaultMaxCommandBytes)),
		fmt.Sprintf("more than %s bytes", thousands(topology.MaxCommandIDBytes)),
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("%s does not state the limit %q", contractPath, want)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "docs/wire-contract.md") {
		t.Error("README.md does not link docs/wire-contract.md")
	}
}

// thousands writes n with a comma every three digits (1,024).
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
