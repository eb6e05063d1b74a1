package logread_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/logread"
)

// txnLog is a one-broker kfake cluster with a one-partition topic "log",
// closed when the test ends.
type txnLog struct {
	t     *testing.T
	seeds []string
}

func newTxnLog(t *testing.T) txnLog {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return txnLog{t, c.ListenAddrs()}
}

// txn is a transactional producer to "log", id, with a transaction begun.
func (l txnLog) txn(id string) *kgo.Client {
	l.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(l.seeds...), kgo.TransactionalID(id), kgo.DefaultProduceTopic("log"))
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(cl.Close)
	if err := cl.BeginTransaction(); err != nil {
		l.t.Fatal(err)
	}
	return cl
}

// client is a plain client of the cluster, closed when the test ends.
func (l txnLog) client() *kgo.Client {
	l.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(l.seeds...))
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(cl.Close)
	return cl
}

// produce writes the value v with cl, failing the test on an error.
func (l txnLog) produce(ctx context.Context, cl *kgo.Client, v string) {
	l.t.Helper()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
		l.t.Fatal(err)
	}
}

// Records of an aborted transaction below the last stable offset, its abort
// marker above it (another transaction open in between): Read ends at the
// stable offset, handing over only the committed records.
func TestReadEndsPastAbortedRecordsBelowTheStableOffset(t *testing.T) {
	t.Parallel()
	lg := newTxnLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	committed := lg.txn("committed")
	lg.produce(ctx, committed, "a")
	if err := committed.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	zombie, open := lg.txn("zombie"), lg.txn("open")
	lg.produce(ctx, zombie, "aborted")
	lg.produce(ctx, open, "open")
	if err := zombie.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = open.EndTransaction(context.Background(), kgo.TryAbort) }()

	cl := lg.client()
	stable, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, "log")
	if err != nil {
		t.Fatal(err)
	}
	lso, _ := stable.Lookup("log", 0)
	var got []string
	next, err := logread.Read(ctx, cl, "log", 0, 0, lso.Offset, logread.Options{}, func(r *kgo.Record) error {
		got = append(got, string(r.Value))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if next < lso.Offset || len(got) != 1 || got[0] != "a" {
		t.Fatalf("read %v up to %d (stable offset %d), want only [a] and the stable offset reached", got, next, lso.Offset)
	}
}

// Uncommitted reads to the high watermark, past an open transaction, and
// with KeepControl hands over the markers that tell each producer's outcome.
func TestReadUncommittedHandsOverRecordsAndMarkers(t *testing.T) {
	t.Parallel()
	lg := newTxnLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open, later := lg.txn("open"), lg.txn("later")
	lg.produce(ctx, open, "open")
	defer func() { _ = open.EndTransaction(context.Background(), kgo.TryAbort) }()
	lg.produce(ctx, later, "later")
	if err := later.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	cl := lg.client()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "log")
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup("log", 0)
	var values []string
	var markers int
	next, err := logread.Read(ctx, cl, "log", 0, 0, end.Offset, logread.Options{Uncommitted: true, KeepControl: true}, func(r *kgo.Record) error {
		if r.Attrs.IsControl() {
			markers++
		} else {
			values = append(values, string(r.Value))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if next < end.Offset || len(values) != 2 || values[0] != "open" || values[1] != "later" || markers != 1 {
		t.Fatalf("read %v and %d markers up to %d (end %d), want [open later], one marker, the end reached", values, markers, next, end.Offset)
	}
}

// A read that cannot reach until (it lies past the end of the log) ends
// with ctx's error, never with a nil error short of until; one whose fn
// fails stops at once with fn's error. Both return after their fetcher has
// stopped (the race detector sees a fetch using a closed client otherwise).
func TestReadEndsWithCtxOrFnError(t *testing.T) {
	t.Parallel()
	lg := newTxnLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := kgo.NewClient(kgo.SeedBrokers(lg.seeds...), kgo.DefaultProduceTopic("log"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 50 {
		lg.produce(ctx, p, fmt.Sprint(i))
	}

	cl := lg.client()
	short, cancelShort := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancelShort()
	n := 0
	next, err := logread.Read(short, cl, "log", 0, 0, 1000, logread.Options{MaxBytes: 64}, func(*kgo.Record) error { n++; return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read past the end: next %d, %d records, err %v; want the deadline's error", next, n, err)
	}
	if n != 50 || next != 50 {
		t.Fatalf("read past the end handed %d records and reached %d, want 50 and 50", n, next)
	}

	boom := errors.New("boom")
	cl2 := lg.client()
	n = 0
	_, err = logread.Read(ctx, cl2, "log", 0, 0, 50, logread.Options{MaxBytes: 64}, func(*kgo.Record) error {
		n++
		if n == 3 {
			return boom
		}
		return nil
	})
	cl2.Close()
	if !errors.Is(err, boom) || n != 3 {
		t.Fatalf("fn failing at the third record: %d records, err %v", n, err)
	}
}
