package history_test

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// BenchmarkIndexerCatchUp: the whole cost of indexing one event (the
// broker's fetch, decoding, Pebble), per event, on the embedded broker:
// b.N processor-shaped events (transactions of 125, 10,000 aggregates),
// then a CatchUp from scratch, timed.
func BenchmarkIndexerCatchUp(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	cl, err := kgo.NewClient(append(opts, kgo.TransactionalID("bench"), kgo.DefaultProduceTopic("events"), kgo.ProducerBatchCompression(kgo.NoCompression()))...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	versions := map[int]int{}
	value := make([]byte, 120)
	for i := 0; i < b.N; i += 125 {
		if err := cl.BeginTransaction(); err != nil {
			b.Fatal(err)
		}
		for j := i; j < min(i+125, b.N); j++ {
			a := j * 7919 % 10000
			versions[a]++
			cl.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "acc-%d", a), Value: value, Headers: []kgo.RecordHeader{
				{Key: wire.HeaderEventType, Value: []byte("MoneyDeposited")},
				{Key: wire.HeaderAggregateType, Value: []byte("account")},
				{Key: wire.HeaderVersion, Value: []byte(strconv.Itoa(versions[a]))},
			}}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			b.Fatal(err)
		}
	}
	idx, err := history.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer idx.Close()
	ix, err := history.NewIndexer(history.IndexerConfig{Index: idx, ClientOpts: opts})
	if err != nil {
		b.Fatal(err)
	}
	if f := os.Getenv("KCQRS_HISTORY_CPUPROFILE"); f != "" && b.N > 1000 {
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		defer out.Close()
		_ = pprof.StartCPUProfile(out)
		defer pprof.StopCPUProfile()
	}
	b.ResetTimer()
	cpu0 := processCPU()
	if err := ix.CatchUp(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	b.StopTimer()
	if got := ix.Stats().Indexed; got != int64(b.N) {
		b.Fatalf("indexed %d, want %d (%+v)", got, b.N, ix.Stats())
	}
}

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
