package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// restartResult is what the restart suite measured.
type restartResult struct {
	aggregates       int
	populateSeconds  float64
	peakRSSKiB       int64
	stopRSSKiB       int64 // peak including the clean stop
	changelogRecords int64
	clean, killed    restartRun
	coldRecords      int
	coldSeconds      float64 // wall time, all partitions
	coldSummed       float64 // per-partition durations added up
	rawRecords       int
	rawSeconds       float64
}

// restartRun is one restart: what the stores read from the changelog, how
// long their catch-up took, and the time from process start to the first
// reply from every partition.
type restartRun struct {
	records int
	// restoreSeconds is the wall time of the catch-ups, from the first
	// one's start to the last one's end (partitions restore side by side);
	// summedSeconds adds up each partition's own duration.
	restoreSeconds float64
	summedSeconds  float64
	firstReplies   float64
}

func sumOffsets(ctx context.Context, adm *kadm.Client, group, topic string) (committed, end int64, err error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, 0, err
	}
	ends.Each(func(o kadm.ListedOffset) { end += o.Offset })
	if group == "" {
		return 0, end, nil
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, end, err
	}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At > 0 {
			committed += o.At
		}
	})
	return committed, end, nil
}

// probe sends one Deposit to an account of every partition and waits for
// the replies: every partition's store has caught up once it returns.
func probe(ctx context.Context, o *Options, w *workload, topics topology.Topics, run string) error {
	cl, err := client.New(ctx, client.Config{Brokers: o.Brokers, CommandTopic: topics.Commands, ReplyTopic: topics.Replies, ClientOpts: o.ClientOpts})
	if err != nil {
		return err
	}
	defer cl.Close()
	covered := map[int32]string{}
	for i := 0; i < w.accounts && int32(len(covered)) < o.Partitions; i++ {
		p := topology.PartitionFor([]byte(accountID(i)), o.Partitions)
		if _, ok := covered[p]; !ok {
			covered[p] = accountID(i)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(covered))
	for p, id := range covered {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			rep, err := cl.Send(sctx, client.Command{AggregateType: "account", AggregateID: id, Type: "Deposit", ID: fmt.Sprintf("%s-probe-%d", run, p), Avro: w.deposit})
			if err == nil && rep.Status != wire.StatusAccepted {
				err = fmt.Errorf("probe of %s: %s %s", id, rep.Status, rep.Message)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// restartOnce starts a child on stateDir, probes every partition and stops
// the child cleanly.
func restartOnce(ctx context.Context, o *Options, w *workload, prefix, stateDir, instance, run string) (restartRun, error) {
	var rr restartRun
	topics := topicsFor(prefix)
	start := time.Now()
	c, err := spawnChild(o, prefix, stateDir, instance)
	if err != nil {
		return rr, err
	}
	if err := probe(ctx, o, w, topics, run); err != nil {
		c.kill()
		return rr, err
	}
	rr.firstReplies = time.Since(start).Seconds()
	reps, err := c.restores(o.Partitions, time.Minute)
	if err != nil {
		c.kill()
		return rr, err
	}
	var first, last time.Time
	for _, r := range reps {
		rr.records += r.Records
		rr.summedSeconds += r.Duration.Seconds()
		if first.IsZero() || r.Start.Before(first) {
			first = r.Start
		}
		if end := r.Start.Add(r.Duration); end.After(last) {
			last = end
		}
	}
	rr.restoreSeconds = last.Sub(first).Seconds()
	if _, err := c.term(); err != nil {
		return rr, err
	}
	return rr, nil
}

// runRestart: populate a store of o.RestartAggregates accounts in a child
// process (its peak RSS is the memory figure), restart it after a clean stop
// and after SIGKILL mid-load, rebuild it from scratch, and consume the same
// changelog raw for comparison.
func runRestart(ctx context.Context, o *Options, adm *kadm.Client, prod *kgo.Client) (restartResult, error) {
	res := restartResult{aggregates: o.RestartAggregates}
	prefix := o.Prefix + "restart-"
	topics := topicsFor(prefix)
	group := prefix + "processor"
	w, err := newWorkload(o.RestartAggregates)
	if err != nil {
		return res, err
	}
	stateDir := filepath.Join(o.WorkDir, "restart-store")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return res, err
	}
	const instance = "bench-restart"

	// Populate.
	c, err := spawnChild(o, prefix, stateDir, instance)
	if err != nil {
		return res, err
	}
	start := time.Now()
	if err := topicReady(ctx, adm, topics.Commands); err != nil {
		c.kill()
		return res, err
	}
	if err := produceAll(ctx, prod, o.RestartAggregates, w.opens(topics.Commands, "restart")); err != nil {
		c.kill()
		return res, err
	}
	if err := waitFor(ctx, o.Timeout, "the child to process the accounts", func() (bool, error) {
		committed, end, err := sumOffsets(ctx, adm, group, topics.Commands)
		return err == nil && committed >= end && end >= int64(o.RestartAggregates), nil
	}); err != nil {
		c.kill()
		return res, err
	}
	res.populateSeconds = time.Since(start).Seconds()
	final, err := c.term()
	if err != nil {
		return res, err
	}
	res.peakRSSKiB, res.stopRSSKiB = final.VmHWMKiB, final.StopVmHWMKiB
	if _, res.changelogRecords, err = sumOffsets(ctx, adm, "", topics.Changelog); err != nil {
		return res, err
	}

	// Warm restart after a clean stop.
	if res.clean, err = restartOnce(ctx, o, w, prefix, stateDir, instance, "clean"); err != nil {
		return res, fmt.Errorf("clean restart: %w", err)
	}

	// SIGKILL while commands flow, then restart.
	c, err = spawnChild(o, prefix, stateDir, instance)
	if err != nil {
		return res, err
	}
	before, _, err := sumOffsets(ctx, adm, group, topics.Commands)
	if err != nil {
		c.kill()
		return res, err
	}
	backlog := 20 * o.MaxBatch
	go func() { _ = produceAll(ctx, prod, backlog, w.deposits(topics.Commands, "kill")) }()
	if err := waitFor(ctx, o.Timeout, "the child to be mid-load", func() (bool, error) {
		committed, _, err := sumOffsets(ctx, adm, group, topics.Commands)
		return err == nil && committed >= before+int64(backlog/2), nil
	}); err != nil {
		c.kill()
		return res, err
	}
	c.kill()
	if res.killed, err = restartOnce(ctx, o, w, prefix, stateDir, instance, "killed"); err != nil {
		return res, fmt.Errorf("restart after SIGKILL: %w", err)
	}

	// Full rebuild into an empty store, then a raw consume of the same
	// changelog, compacted first as a broker's log cleaner would have
	// done by now (the bench's embedded broker compacts only when told).
	if o.compact != nil {
		o.compact()
	}
	cold := filepath.Join(o.WorkDir, "restart-cold")
	if err := os.MkdirAll(cold, 0o755); err != nil {
		return res, err
	}
	coldRun, err := restartOnce(ctx, o, w, prefix, cold, instance, "cold")
	if err != nil {
		return res, fmt.Errorf("full restore: %w", err)
	}
	res.coldRecords, res.coldSeconds, res.coldSummed = coldRun.records, coldRun.restoreSeconds, coldRun.summedSeconds
	res.rawRecords, res.rawSeconds, err = rawConsume(ctx, o, adm, topics.Changelog)
	return res, err
}

// topicReady waits until the topic exists with o.Partitions partitions.
func topicReady(ctx context.Context, adm *kadm.Client, topic string) error {
	return waitFor(ctx, 2*time.Minute, "topic "+topic, func() (bool, error) {
		td, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return false, nil
		}
		t, ok := td[topic]
		return ok && t.Err == nil && len(t.Partitions) > 0, nil
	})
}

// rawConsume reads the whole topic (read_committed) with one franz-go
// client and returns the records read and the seconds it took.
func rawConsume(ctx context.Context, o *Options, adm *kadm.Client, topic string) (int, float64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, 0, err
	}
	target := map[int32]int64{}
	ends.Each(func(e kadm.ListedOffset) { target[e.Partition] = e.Offset })
	start := time.Now()
	cl, err := kgo.NewClient(append(o.clientOpts(),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	next := map[int32]int64{}
	done := func() bool {
		for p, end := range target {
			if next[p] < end {
				return false
			}
		}
		return true
	}
	records := 0
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	for !done() {
		fs := cl.PollFetches(cctx)
		if cctx.Err() != nil {
			return records, 0, fmt.Errorf("raw consume of %s: %w", topic, cctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			next[r.Partition] = r.Offset + 1
			if !r.Attrs.IsControl() {
				records++
			}
		})
	}
	return records, time.Since(start).Seconds(), nil
}
