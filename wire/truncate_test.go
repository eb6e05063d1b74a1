package wire

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTruncate: a capped text is at most n bytes, valid UTF-8 when its
// input was (never half a rune), and says how long it was.
func TestTruncate(t *testing.T) {
	for _, s := range []string{strings.Repeat("a", 1000), strings.Repeat("é", 500), strings.Repeat("🙂", 300), "short"} {
		for _, n := range []int{65, 100, 257, 999} {
			got := Truncate(s, n)
			switch {
			case len(s) <= n && got != s:
				t.Fatalf("%d bytes within %d were changed", len(s), n)
			case len(got) > n:
				t.Fatalf("Truncate(%d bytes, %d) is %d bytes", len(s), n, len(got))
			case !utf8.ValidString(got):
				t.Fatalf("Truncate(%q..., %d) cut a rune: %q", s[:8], n, got)
			case len(s) > n && !strings.HasSuffix(got, "[truncated, "+strconv.Itoa(len(s))+" bytes]"):
				t.Fatalf("no length marker: %q", got)
			}
		}
	}
}
