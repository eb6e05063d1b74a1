package logread_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/logread"
)

// Records of an aborted transaction below the last stable offset, its abort
// marker above it (another transaction open in between): Read ends at the
// stable offset, handing over only the committed records.
func TestReadEndsPastAbortedRecordsBelowTheStableOffset(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seeds := c.ListenAddrs()
	newTxn := func(id string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID(id), kgo.DefaultProduceTopic("log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		return cl
	}
	produce := func(cl *kgo.Client, v string) {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	committed := newTxn("committed")
	produce(committed, "a")
	if err := committed.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	zombie, open := newTxn("zombie"), newTxn("open")
	produce(zombie, "aborted")
	produce(open, "open")
	if err := zombie.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = open.EndTransaction(context.Background(), kgo.TryAbort) }()

	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
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
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seeds := c.ListenAddrs()
	newTxn := func(id string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID(id), kgo.DefaultProduceTopic("log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		return cl
	}
	open, later := newTxn("open"), newTxn("later")
	if err := open.ProduceSync(ctx, &kgo.Record{Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = open.EndTransaction(context.Background(), kgo.TryAbort) }()
	if err := later.ProduceSync(ctx, &kgo.Record{Value: []byte("later")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := later.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
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
