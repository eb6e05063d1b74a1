package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/topology"
)

// The breakdown of a SIGKILL is read from the reports of the workers that
// took the partitions: the last partition's assignment and store, and each
// taker's first commit after taking them; reports from before the SIGKILL
// and of other partitions do not count.
func TestLivenessSteps(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	a := &watchedChild{msgs: []childMsg{
		{Event: "assigned", Parts: []int32{0}, At: at(-500)},
		{Event: "committed", At: at(-400)},
		{Event: "assigned", Parts: []int32{0, 2}, At: at(8000)},
		{Event: "restored", Restore: &topology.RestoreReport{Partition: 0}, At: at(8010)},
		{Event: "restored", Restore: &topology.RestoreReport{Partition: 2}, At: at(8050)},
		{Event: "committed", At: at(8060)},
		{Event: "committed", At: at(9000)},
	}}
	b := &watchedChild{msgs: []childMsg{
		{Event: "assigned", Parts: []int32{1, 3}, At: at(8020)},
		{Event: "restored", Restore: &topology.RestoreReport{Partition: 1}, At: at(8100)},
		{Event: "restored", Restore: &topology.RestoreReport{Partition: 3}, At: at(8300)},
		{Event: "committed", At: at(8200)},
	}}
	var s livenessSample
	steps([]*watchedChild{a, b}, &s, t0, []int32{2, 3})
	want := livenessSample{assigned: 8020 * time.Millisecond, restored: 8300 * time.Millisecond, committed: 8200 * time.Millisecond}
	if s != want {
		t.Fatalf("steps = %+v, want %+v", s, want)
	}

	var rows []string
	r := livenessResult{session: 8 * time.Second,
		restart: []livenessSample{{total: 300 * time.Millisecond}, {total: 3500 * time.Millisecond}, {total: 200 * time.Millisecond}},
		dead:    []livenessSample{{total: 9 * time.Second}, {total: 9100 * time.Millisecond}}}
	r.rows(func(cells ...string) { rows = append(rows, strings.Join(cells, " | ")) })
	if len(rows) != 2 || !strings.Contains(rows[0], "median 0.30 s, worst 3.50 s") || !strings.Contains(rows[0], "(missed)") ||
		!strings.Contains(rows[1], "median 9.05 s, worst 9.10 s") || !strings.Contains(rows[1], "(met)") || !strings.Contains(rows[1], "every round <= 10s") {
		t.Fatalf("rows:\n%s", strings.Join(rows, "\n"))
	}
}
