package bench

import (
	"context"
	"os"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/embedded"
)

// BenchmarkCatchUpRounds runs only the catch-up measurement of the full run
// (runCatchUp: raw consume, goka floor, projector), at the full run's sizes,
// b.N rounds on one embedded broker, and logs each round's figures; with
// KCQRS_CATCHUP_PROFILE set, the first round's projector is CPU-profiled
// into that file, as kcqrs-bench --projector-cpuprofile does:
//
//	go test ./internal/bench -run '^$' -bench CatchUpRounds -benchtime 5x -v
func BenchmarkCatchUpRounds(b *testing.B) {
	o := Full()
	o.setDefaults()
	c, err := embedded.Start(embedded.Options{CompactionIntervalMs: 24 * 3600 * 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	o.Brokers, o.WorkDir = c.ListenAddrs(), b.TempDir()
	admCl, err := kgo.NewClient(o.clientOpts()...)
	if err != nil {
		b.Fatal(err)
	}
	defer admCl.Close()
	prod, err := kgo.NewClient(o.clientOpts()...)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	var prof *os.File
	if path := os.Getenv("KCQRS_CATCHUP_PROFILE"); path != "" {
		if prof, err = os.Create(path); err != nil {
			b.Fatal(err)
		}
		defer prof.Close()
	}
	b.ResetTimer()
	for round := range b.N {
		var w *os.File
		if round == 0 {
			w = prof
		}
		var r catchUpResult
		if w != nil {
			r, err = runCatchUp(context.Background(), &o, kadm.NewClient(admCl), prod, round, w)
		} else {
			r, err = runCatchUp(context.Background(), &o, kadm.NewClient(admCl), prod, round, nil)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("round %d: projector %.0f events/s, goka floor %.0f events/s, ratio %.3f; raw %.0f; %s",
			round, r.Projector, r.GokaNoop, r.Projector/r.GokaNoop, r.Raw, r.Phases)
	}
}
