package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
)

// runningProcessor is an in-process topology.Processor.
type runningProcessor struct {
	*topology.Processor
	cancel context.CancelFunc
	done   chan error
}

func startProcessor(o *Options, topics topology.Topics, group, instance, stateDir string, mutate func(*topology.Config)) (*runningProcessor, error) {
	reg, err := examples.Registry()
	if err != nil {
		return nil, err
	}
	cfg := topology.Config{
		Brokers: o.Brokers, Topics: topics, Group: group, InstanceID: instance, StateDir: stateDir,
		Partitions: o.Partitions, MaxBatch: o.MaxBatch, CommitInterval: o.CommitInterval,
		ClientOpts: o.ClientOpts,
		Logger:     slog.New(slog.NewTextHandler(o.logOut(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	// Profiler label who=processor: its goroutines inherit it, so a CPU
	// profile tells it from the broker and the client (go tool pprof -tags).
	var (
		rp *runningProcessor
		p  *topology.Processor
	)
	pprof.Do(context.Background(), pprof.Labels("who", "processor"), func(lctx context.Context) {
		if p, err = topology.New(cfg, reg); err != nil {
			return
		}
		ctx, cancel := context.WithCancel(lctx)
		rp = &runningProcessor{Processor: p, cancel: cancel, done: make(chan error, 1)}
		go func() { rp.done <- p.Run(ctx) }()
	})
	return rp, err
}

func (rp *runningProcessor) stop() error {
	rp.cancel()
	return <-rp.done
}

// processed is the committed command count, or the processor's error.
func (rp *runningProcessor) processed() (int64, error) {
	select {
	case err := <-rp.done:
		rp.done <- err
		if err == nil {
			err = errors.New("processor stopped")
		}
		return 0, err
	default:
	}
	return rp.Stats().Commands, nil
}

// outputShape is what the processor wrote per command: the pass-through
// writes the same.
type outputShape struct {
	eventBytes, replyBytes, snapshotBytes       int
	eventHeaders, replyHeaders                  int
	eventsPerCommand, snapshotsPerCommand, cmds float64
}

func (s outputShape) String() string {
	return fmt.Sprintf("per command %.2f events of %d B, 1 reply of %d B, %.3f snapshots of %d B",
		s.eventsPerCommand, s.eventBytes, s.replyBytes, s.snapshotsPerCommand, s.snapshotBytes)
}

// passThrough consumes the commands topic and writes, per command, an event
// and a reply of the processor's sizes, and one snapshot per distinct key per
// transaction, to the same topics (by role) under the same bounds: at most
// MaxBatch records and CommitInterval per transaction. transactional=false
// is the at-least-once variant: plain produce, flush, commit offsets.
type passThrough struct {
	committed, transactions atomic.Int64
	err                     atomic.Value
	stop                    context.CancelFunc
	done                    chan struct{}
}

func startPassThrough(o *Options, topics topology.Topics, group string, shape outputShape, transactional bool) (*passThrough, error) {
	pt := &passThrough{done: make(chan struct{})}
	eventVal := bytes.Repeat([]byte("e"), shape.eventBytes)
	replyVal := bytes.Repeat([]byte("r"), shape.replyBytes)
	snapVal := bytes.Repeat([]byte("s"), shape.snapshotBytes)
	headers := func(n int) []kgo.RecordHeader {
		h := make([]kgo.RecordHeader, n)
		for i := range h {
			h[i] = kgo.RecordHeader{Key: fmt.Sprintf("h%d", i), Value: []byte("0123456789")}
		}
		return h
	}
	evH, repH := headers(shape.eventHeaders), headers(shape.replyHeaders)
	opts := append(append([]kgo.Opt{}, o.clientOpts()...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topics.Commands),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	var (
		sess *kgo.GroupTransactSession
		cl   *kgo.Client
		err  error
	)
	if transactional {
		sess, err = kgo.NewGroupTransactSession(append(opts,
			kgo.TransactionalID(group+"-0"),
			kgo.TransactionTimeout(10*time.Second),
			kgo.RequireStableFetchOffsets())...)
		if err == nil {
			cl = sess.Client()
		}
	} else {
		cl, err = kgo.NewClient(append(opts, kgo.DisableAutoCommit())...)
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	pt.stop = cancel
	poll := func(ctx context.Context, n int) kgo.Fetches {
		if sess != nil {
			return sess.PollRecords(ctx, n)
		}
		return cl.PollRecords(ctx, n)
	}
	produce := func(r *kgo.Record, failed *atomic.Bool) {
		fn := func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(true)
			}
		}
		if sess != nil {
			sess.Produce(ctx, r, fn)
		} else {
			cl.Produce(ctx, r, fn)
		}
	}
	go func() {
		defer close(pt.done)
		defer func() {
			if sess != nil {
				sess.Close()
			} else {
				cl.Close()
			}
		}()
		for {
			fetches := poll(ctx, o.MaxBatch)
			if ctx.Err() != nil || fetches.IsClientClosed() {
				return
			}
			if fetches.NumRecords() == 0 {
				continue
			}
			if sess != nil {
				if err := sess.Begin(); err != nil {
					pt.err.Store(err)
					return
				}
			}
			var failed atomic.Bool
			touched := map[string]int32{}
			n := 0
			handle := func(fs kgo.Fetches) {
				fs.EachRecord(func(r *kgo.Record) {
					n++
					touched[string(r.Key)] = r.Partition
					produce(&kgo.Record{Topic: topics.Events, Partition: r.Partition, Key: r.Key, Value: eventVal, Headers: evH}, &failed)
					produce(&kgo.Record{Topic: topics.Replies, Partition: r.Partition, Key: r.Key, Value: replyVal, Headers: repH}, &failed)
				})
			}
			handle(fetches)
			deadline := time.Now().Add(o.CommitInterval)
			for n < o.MaxBatch && cl.BufferedFetchRecords() > 0 && time.Now().Before(deadline) {
				pctx, c := context.WithDeadline(ctx, deadline)
				handle(poll(pctx, o.MaxBatch-n))
				c()
			}
			for k, p := range touched {
				produce(&kgo.Record{Topic: topics.Changelog, Partition: p, Key: []byte(k), Value: snapVal}, &failed)
			}
			ectx, c := context.WithTimeout(context.Background(), 10*time.Second)
			ok := true
			var err error
			if sess != nil {
				try := kgo.TryCommit
				if failed.Load() {
					try = kgo.TryAbort
				}
				ok, err = sess.End(ectx, try)
			} else {
				err = cl.Flush(ectx)
				if err == nil {
					err = cl.CommitUncommittedOffsets(ectx)
				}
			}
			c()
			pt.transactions.Add(1)
			if ok && err == nil && !failed.Load() {
				pt.committed.Add(int64(n))
			}
			if err != nil && ctx.Err() == nil {
				pt.err.Store(err)
				return
			}
		}
	}()
	return pt, nil
}

func (pt *passThrough) processed() (int64, error) {
	if err, _ := pt.err.Load().(error); err != nil {
		return 0, err
	}
	return pt.committed.Load(), nil
}

func (pt *passThrough) close() {
	pt.stop()
	<-pt.done
}
