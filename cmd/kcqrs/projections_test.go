package main

import (
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/projection"
)

func TestProgressBar(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		want        string
	}{
		{0, 10, "[..........]   0% 0/10 records"},
		{5, 10, "[#####.....]  50% 5/10 records"},
		{12, 10, "[##########] 100% 12/10 records"},
		{0, 0, "[##########] 100% 0/0 records"},
	} {
		if got := progressBar(c.done, c.total, 10); got != c.want {
			t.Errorf("progressBar(%d, %d) = %q, want %q", c.done, c.total, got, c.want)
		}
	}
}

// A caught-up rebuild ends at 100%, although the groups' positions stay
// behind the end offsets by the commit markers they never read.
func TestRebuildBarEndsFull(t *testing.T) {
	pr := projection.Progress{Done: 996, Total: 1000}
	if got := rebuildBar(true, pr); !strings.Contains(got, "100% 1000/1000") {
		t.Fatalf("caught up: %q", got)
	}
	if got := rebuildBar(false, pr); !strings.Contains(got, " 99% 996/1000") {
		t.Fatalf("not caught up: %q", got)
	}
}
