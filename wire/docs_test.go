package wire_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// firstScreen is how many lines of README.md a reader sees before the
// links to the rest of the documentation (issue 18: "docs that fit").
const firstScreen = 80

// TestREADMEFirstScreen: the README's "Documentation" links start within
// its first screen; everything longer belongs in docs/.
func TestREADMEFirstScreen(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == "## Documentation" {
			if i+1 > firstScreen {
				t.Errorf("README.md's \"## Documentation\" heading is on line %d, past the first screen of %d lines; move text into docs/", i+1, firstScreen)
			}
			return
		}
	}
	t.Errorf("README.md has no \"## Documentation\" heading with the links to docs/")
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// markdownFiles are README.md and every page under docs/.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"../README.md"}, pages...)
}

// anchors returns the GitHub anchors of a Markdown file's headings (fenced
// code is skipped: a shell comment is not a heading).
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(l, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127 && r != '·' && r != '→' && r != '—':
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// TestDocsLinks: every relative link in README.md and docs/*.md points to
// a file that exists and, when it names an anchor in a Markdown file, to a
// heading of that file.
func TestDocsLinks(t *testing.T) {
	files := markdownFiles(t)
	texts := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts[filepath.Clean(f)] = string(raw)
	}
	for _, f := range files {
		for _, m := range mdLink.FindAllStringSubmatch(texts[filepath.Clean(f)], -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			target, anchor, _ := strings.Cut(link, "#")
			path := filepath.Clean(f)
			if target != "" {
				path = filepath.Join(filepath.Dir(f), target)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s links %q, which does not exist (%v)", f, link, err)
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(path, ".md") {
				continue
			}
			text, ok := texts[path]
			if !ok {
				raw, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				text = string(raw)
			}
			if !anchors(text)[anchor] {
				t.Errorf("%s links %q, but %s has no heading with the anchor #%s", f, link, path, anchor)
			}
		}
	}
}
