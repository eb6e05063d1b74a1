package projection

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkProjectorCatchUp measures how fast a fresh version folds a
// backlog of account events into all three read models (through the
// intermediate topics), on one embedded broker:
//
//	go test ./projection -run '^$' -bench ProjectorCatchUp -benchtime 1x
func BenchmarkProjectorCatchUp(b *testing.B) {
	e := newEnv(b)
	n, _ := e.workload(9, 500, 39, "acc-") // 20 001 records
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		p := e.startProjector(e.config(b.TempDir(), i+1))
		eventually(b, "caught up", func() (bool, string) {
			s, own := p.Stats(), p.GroupStats()[string(p.Names().OwnersGroup())]
			return s.Events == int64(n) && s.Written >= s.Applied && s.Merged+s.StaleMerges >= s.Forwarded &&
				own.Applied+own.Stale >= 500, fmt.Sprintf("%+v", s)
		})
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
		_ = p.stop()
	}
}
