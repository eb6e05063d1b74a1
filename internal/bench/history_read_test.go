package bench

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/internal/logread"
)

// BenchmarkHistoryRead times one History call (one aggregate's 100 events
// spread over a partition of KCQRS_HISTORY_EVENTS events, default 100000,
// in transactions of 125, uncompressed as a processor writes) against one warm fetch of a batch, on the
// embedded broker in the same process, as the bench's history rows do.
// KCQRS_HISTORY_CPUPROFILE writes a CPU profile of the timed reads;
// KCQRS_HISTORY_CONC sets the fetches in flight (default 8),
// KCQRS_HISTORY_CONNS the clients (connections) they are spread over
// (default 1); KCQRS_HISTORY_SNAPPY compresses the batches.
func BenchmarkHistoryRead(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("KCQRS_HISTORY_EVENTS")); err == nil && v > 0 {
		n = v
	}
	conc := 8
	if v, err := strconv.Atoi(os.Getenv("KCQRS_HISTORY_CONC")); err == nil && v > 0 {
		conc = v
	}
	conns := 1
	if v, err := strconv.Atoi(os.Getenv("KCQRS_HISTORY_CONNS")); err == nil && v > 0 {
		conns = v
	}
	c, err := embedded.Start(embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	if _, err := kadm.NewClient(admin).CreateTopic(ctx, 1, -1, nil, "events"); err != nil {
		b.Fatal(err)
	}
	codec := kgo.NoCompression()
	if os.Getenv("KCQRS_HISTORY_SNAPPY") != "" {
		codec = kgo.SnappyCompression()
	}
	if err := writeHistoryTopic(ctx, opts, "writer", "events", n, codec); err != nil {
		b.Fatal(err)
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
	if err := ix.CatchUp(ctx); err != nil {
		b.Fatal(err)
	}
	reg, err := examples.Registry()
	if err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var more []*kgo.Client
	for range max(conns, 4) - 1 {
		c, err := kgo.NewClient(opts...)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		more = append(more, c)
	}
	readers := map[int]*history.Reader{}
	for _, k := range []int{1, 4, conns} {
		if readers[k], err = history.NewReader(history.ReaderConfig{Index: idx, Client: cl, Registry: reg, Concurrency: conc, FetchClients: more[:k-1]}); err != nil {
			b.Fatal(err)
		}
	}
	desc, err := logread.Describe(ctx, cl, "events", 0)
	if err != nil {
		b.Fatal(err)
	}
	read := func(b *testing.B, r *history.Reader) {
		cpu0 := processCPU()
		defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op") }()
		for i := 0; b.Loop(); i++ {
			evs, err := r.History(ctx, "account", "target-"+strconv.Itoa(i%historyTargets), 1, historyPerTarget)
			if err != nil {
				b.Fatal(err)
			}
			if len(evs) != historyPerTarget {
				b.Fatalf("%d events", len(evs))
			}
		}
	}
	b.Run("history", func(b *testing.B) {
		if f := os.Getenv("KCQRS_HISTORY_CPUPROFILE"); f != "" {
			out, err := os.Create(f)
			if err != nil {
				b.Fatal(err)
			}
			defer out.Close()
			_ = pprof.StartCPUProfile(out)
			defer pprof.StopCPUProfile()
		}
		read(b, readers[conns])
	})
	// Alternated pairs, one connection against four, in one process.
	if os.Getenv("KCQRS_HISTORY_PAIRS") != "" {
		for pair := range 4 {
			order := []int{1, 4}
			if pair%2 == 1 {
				order = []int{4, 1}
			}
			for _, k := range order {
				b.Run(fmt.Sprintf("pair%d/conns=%d", pair, k), func(b *testing.B) { read(b, readers[k]) })
			}
		}
	}
	b.Run("scan", func(b *testing.B) {
		end := int64(n + (n+historyTxn-1)/historyTxn) // records and a commit marker per transaction
		for b.Loop() {
			found, err := scanForTarget(ctx, cl, reg, "events", end)
			if err != nil {
				b.Fatal(err)
			}
			if found != historyPerTarget {
				b.Fatalf("scan found %d", found)
			}
		}
	})
	b.Run("one-fetch", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := logread.FetchAt(ctx, cl, "events", 0, desc, int64(n/2+i%1000*historyTxn), 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
