package projection

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestMembersComeAndGo: two members of one version share the partitions
// while events arrive; then the second leaves and its partitions come back
// to the first, which had folded (and cached) their accounts before the
// second took them over. The accounts group's writer caches entries (see
// tableWriter), so a member whose cache survived a rebalance would fold
// the returning partitions' events on entries the other member has since
// moved on: gaps and wrong totals. The read models must equal the fold of
// the events topic, with no gap.
func TestMembersComeAndGo(t *testing.T) {
	e := newEnv(t)
	recs, _ := e.workloadRecords(5, 40, 30, "acc-")
	n := len(recs)
	third := n / 3
	e.produce(recs[:third]...)
	a := e.startProjector(e.config(t.TempDir(), 1))
	eventually(t, "the first member folded the first third", func() (bool, string) {
		s := a.Stats()
		return s.Events >= int64(third) && s.Written >= s.Applied, fmt.Sprintf("%+v", s)
	})
	b := e.startProjector(e.config(t.TempDir(), 1))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	e.produce(recs[third : 2*third]...)
	eventually(t, "the second member folded part of the second third", func() (bool, string) {
		sa, sb := a.Stats(), b.Stats()
		return sb.Applied > 0 && sa.Events+sb.Events >= int64(2*third), fmt.Sprintf("%+v %+v", sa, sb)
	})
	if err := b.stop(); err != nil {
		t.Fatalf("second member: %v", err)
	}
	e.produce(recs[2*third:]...)
	s := e.startServer(t.TempDir(), 1)
	f := foldTopic(t, e.brokers, n)
	eventually(t, "read models equal the fold", func() (bool, string) { return f.matches(s.Handler()) })
	if sa, sb := a.Stats(), b.Stats(); sa.Gaps+sb.Gaps != 0 {
		t.Fatalf("a rebalance must not look like a gap: %+v %+v", sa, sb)
	}
}
