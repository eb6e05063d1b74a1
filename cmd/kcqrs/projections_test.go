package main

import "testing"

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
