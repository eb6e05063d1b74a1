package history_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestIndexerChild is the indexer process TestIndexerSurvivesSIGKILL
// kills; it does nothing in a normal run.
func TestIndexerChild(t *testing.T) {
	dir := os.Getenv("KCQRS_HISTORY_CHILD_DIR")
	if dir == "" {
		t.Skip("helper process of TestIndexerSurvivesSIGKILL")
	}
	idx, err := history.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := history.NewIndexer(history.IndexerConfig{Index: idx, ClientOpts: []kgo.Opt{kgo.SeedBrokers(strings.Split(os.Getenv("KCQRS_HISTORY_CHILD_BROKERS"), ",")...)}})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			<-ix.Changed()
			fmt.Printf("records %d\n", ix.Stats().Records)
		}
	}()
	_ = ix.Run(context.Background()) // until killed
}

// produceEvents writes n records shaped like a kcqrs processor's events
// (key, aggregate type and version headers) to the events topic, in
// transactions of 100, some of them aborted (which must not be indexed).
func produceEvents(t *testing.T, brokers []string, n, aggregates int) (committed int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID("fake-processor"), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	versions := map[int]int{}
	for i := 0; i < n; i += 100 {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		abort := (i/100)%7 == 3
		next := map[int]int{}
		for j := i; j < i+100 && j < n; j++ {
			a := j % aggregates
			if _, ok := next[a]; !ok {
				next[a] = versions[a]
			}
			next[a]++
			cl.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "agg-%d", a), Value: []byte("x"), Headers: []kgo.RecordHeader{
				{Key: wire.HeaderAggregateType, Value: []byte("account")},
				{Key: wire.HeaderVersion, Value: []byte(strconv.Itoa(next[a]))},
			}}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(!abort)); err != nil {
			t.Fatal(err)
		}
		if !abort {
			for a, v := range next {
				versions[a] = v
			}
			committed += min(100, n-i)
		}
	}
	return committed
}

func dumpIndex(t *testing.T, idx *history.Index) []string {
	t.Helper()
	var out []string
	if err := idx.Dump(func(typ, id string, p history.Pointer) {
		out = append(out, fmt.Sprintf("%s/%s v%d %d:%d", typ, id, p.Version, p.Partition, p.Offset))
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestIndexerSurvivesSIGKILL: an indexer process killed with SIGKILL in the
// middle of indexing, then restarted on the same directory, ends with
// exactly the index a rebuild from scratch gives: every committed event once,
// no aborted one.
func TestIndexerSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	adm := kadm.NewClient(mustClient(t, e.clientOpts()...))
	if _, err := adm.CreateTopic(context.Background(), 3, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	committed := produceEvents(t, e.h.Brokers, 30000, 500)
	dir := t.TempDir()

	kills := 0
	for round := 0; round < 2; round++ {
		c := exec.Command(os.Args[0], "-test.run=^TestIndexerChild$", "-test.count=1")
		c.Env = append(os.Environ(), "KCQRS_HISTORY_CHILD_DIR="+dir, "KCQRS_HISTORY_CHILD_BROKERS="+strings.Join(e.h.Brokers, ","))
		out, err := c.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var n int
			if _, err := fmt.Sscanf(sc.Text(), "records %d", &n); err == nil && n > 0 {
				break // mid-way: the first Pebble batch is written
			}
		}
		_ = c.Process.Signal(syscall.SIGKILL)
		_ = c.Wait()
		kills++
	}

	// Restart in-process on the same directory and catch up.
	idx, err := history.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	cp, _, _ := idx.Checkpoint(0)
	t.Logf("after %d kills: partition 0 checkpoint %d", kills, cp)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ix, err := history.NewIndexer(history.IndexerConfig{Index: idx, ClientOpts: e.clientOpts()})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	got := dumpIndex(t, idx)

	fresh, err := history.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	fx, err := history.NewIndexer(history.IndexerConfig{Index: fresh, ClientOpts: e.clientOpts()})
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	want := dumpIndex(t, fresh)
	if len(want) != committed {
		t.Fatalf("rebuilt index has %d entries, want the %d committed events", len(want), committed)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("index after SIGKILLs (%d entries) differs from a rebuild (%d entries)", len(got), len(want))
	}
	// Versions of every aggregate run 1..n without a gap or duplicate.
	last := map[string]int64{}
	for _, line := range got {
		var typID string
		var v int64
		var p, o int64
		if _, err := fmt.Sscanf(line, "%s v%d %d:%d", &typID, &v, &p, &o); err != nil {
			t.Fatal(err)
		}
		if v != last[typID]+1 {
			t.Fatalf("%s: version %d after %d", typID, v, last[typID])
		}
		last[typID] = v
	}
}

func mustClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
