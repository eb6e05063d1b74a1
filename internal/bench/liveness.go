package bench

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// Liveness (issue 12 §7): two processor processes (static members, the
// processor binary's defaults) under a steady load; each round SIGKILLs one
// and restarts it at once, then SIGKILLs one and leaves it dead, and times
// from the SIGKILL until every partition answered a probe. The targets:
// every partition answers within 3 s of a restart of the same instance, and
// within the session timeout + 2 s when the worker stays dead.

// livenessSample is one SIGKILL: the time until every partition answered,
// and when the worker that took the partitions (the restarted one, or the
// survivor) reported each step, all measured from the SIGKILL (0: not
// reported).
type livenessSample struct {
	total time.Duration
	// started: the restarted process runs (restart only).
	started time.Duration
	// assigned: the new owner holds the killed worker's partitions.
	assigned time.Duration
	// restored: the new owner's last store of them caught up.
	restored time.Duration
	// committed: the new owner's first commit after the assignment.
	committed time.Duration
	// leftOpen: the killed worker's transaction was still open after the
	// SIGKILL (its records block read_committed readers until it ends);
	// aborted: when the broker no longer had it open.
	leftOpen bool
	// holdsReplies: that transaction had written to the reply topic
	// (every partition it wrote there stays unreadable until it ends).
	holdsReplies bool
	aborted      time.Duration
}

func (s livenessSample) String() string {
	f := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", d.Seconds())
	}
	open := ""
	if s.leftOpen {
		open = ", transaction left open, aborted " + f(s.aborted)
		if !s.holdsReplies {
			open += ", none of it on the reply topic"
		}
	}
	return fmt.Sprintf("%.2f s (started %s, assigned %s, restored %s, first commit %s%s)", s.total.Seconds(), f(s.started), f(s.assigned), f(s.restored), f(s.committed), open)
}

// livenessResult holds every round's samples.
type livenessResult struct {
	session       time.Duration // the workers' session timeout
	restart, dead []livenessSample
}

// watchedChild is a child whose messages are kept with their arrival.
type watchedChild struct {
	*child
	mu   sync.Mutex
	msgs []childMsg
	done chan struct{}
}

func watchChild(c *child) *watchedChild {
	w := &watchedChild{child: c, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for m := range c.msgs {
			w.mu.Lock()
			w.msgs = append(w.msgs, m)
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *watchedChild) kill() {
	w.child.kill()
	<-w.done
}

// steps fills s from the reports of the workers that may have taken parts
// after since: when one of them started, when the last of parts was
// assigned to one of them, when the last of their stores caught up, and the
// last of their first commits after taking them.
func steps(ws []*watchedChild, s *livenessSample, since time.Time, parts []int32) {
	after := func(t time.Time) time.Duration { return t.Sub(since) }
	for _, w := range ws {
		w.mu.Lock()
		var (
			assignedAt time.Time
			counted    bool
		)
		restored := map[int32]bool{}
		for _, m := range w.msgs {
			if m.At.Before(since) {
				continue
			}
			switch m.Event {
			case "started":
				s.started = after(m.At)
			case "assigned":
				took := false
				for _, p := range parts {
					if slices.Contains(m.Parts, p) {
						took = true
					}
				}
				if took && assignedAt.IsZero() {
					assignedAt = m.At
				}
				if took {
					s.assigned = max(s.assigned, after(m.At))
				}
			case "restored":
				if m.Restore != nil && slices.Contains(parts, m.Restore.Partition) && !restored[m.Restore.Partition] {
					restored[m.Restore.Partition] = true
					s.restored = max(s.restored, after(m.At))
				}
			case "committed":
				if !counted && !assignedAt.IsZero() && !m.At.Before(assignedAt) {
					counted = true // only the first commit after taking them
					s.committed = max(s.committed, after(m.At))
				}
			}
		}
		w.mu.Unlock()
	}
}

// assignment is the child's latest reported assignment.
func (w *watchedChild) assignment() []int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.msgs) - 1; i >= 0; i-- {
		if w.msgs[i].Event == "assigned" {
			return w.msgs[i].Parts
		}
	}
	return nil
}

// runLiveness runs o.LivenessRounds rounds of a restart and a dead worker.
func runLiveness(ctx context.Context, o *Options, adm *kadm.Client, prod *kgo.Client, logf func(string, ...any)) (livenessResult, error) {
	res := livenessResult{session: topology.Defaults().SessionTimeout}
	prefix := o.Prefix + "live-"
	topics := topicsFor(prefix)
	group := prefix + "processor"
	const accounts = 200
	w, err := newWorkload(accounts)
	if err != nil {
		return res, err
	}
	ids := []string{"live-0", "live-1", "live-2"} // as many as the chaos test's workers
	spawn := func(id string) (*watchedChild, error) {
		dir := filepath.Join(o.WorkDir, "liveness-"+id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		c, err := spawnChild(o, prefix, dir, id, "--static")
		if err != nil {
			return nil, err
		}
		return watchChild(c), nil
	}
	workers := map[string]*watchedChild{}
	defer func() {
		for _, c := range workers {
			c.kill()
		}
	}()
	for _, id := range ids {
		if workers[id], err = spawn(id); err != nil {
			return res, err
		}
	}
	if err := topicReady(ctx, adm, topics.Commands); err != nil {
		return res, err
	}
	if err := produceAll(ctx, prod, accounts, w.opens(topics.Commands, "live")); err != nil {
		return res, err
	}
	if err := waitFor(ctx, o.Timeout, "the workers to open the accounts", func() (bool, error) {
		committed, end, err := sumOffsets(ctx, adm, group, topics.Commands)
		return err == nil && committed >= end && end >= accounts, nil
	}); err != nil {
		return res, err
	}
	cl, err := client.New(ctx, client.Config{Brokers: o.Brokers, CommandTopic: topics.Commands, ReplyTopic: topics.Replies, ClientOpts: o.ClientOpts})
	if err != nil {
		return res, err
	}
	defer cl.Close()
	covered := map[int32]string{}
	for i := 0; i < accounts && int32(len(covered)) < o.Partitions; i++ {
		p := topology.PartitionFor([]byte(accountID(i)), o.Partitions)
		if _, ok := covered[p]; !ok {
			covered[p] = accountID(i)
		}
	}
	var probes atomic.Int64
	// probe sends one Deposit to every partition and returns when the last
	// one was answered.
	probe := func() error {
		n := probes.Add(1)
		errs := make(chan error, len(covered))
		for p, id := range covered {
			go func() {
				sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				rep, err := cl.Send(sctx, client.Command{AggregateType: "account", AggregateID: id, Type: "Deposit", ID: fmt.Sprintf("live-probe-%d-%d", n, p), Avro: w.deposit})
				if err == nil && rep.Status != wire.StatusAccepted {
					err = fmt.Errorf("probe of %s: %s %s", id, rep.Status, rep.Message)
				}
				errs <- err
			}()
		}
		var first error
		for range covered {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	// settled waits until every worker holds partitions and they answer.
	settled := func() error {
		if err := waitFor(ctx, 2*time.Minute, "every worker to hold partitions", func() (bool, error) {
			time.Sleep(50 * time.Millisecond)
			g, err := adm.DescribeGroups(ctx, group)
			if err != nil {
				return false, nil
			}
			d := g[group]
			if d.Err != nil || d.State != "Stable" || len(d.Members) != len(ids) {
				return false, nil
			}
			for _, id := range ids {
				if len(workers[id].assignment()) == 0 {
					return false, nil
				}
			}
			return true, nil
		}); err != nil {
			return err
		}
		return probe()
	}

	// The steady load: deposits at about 1000/s, so that a SIGKILL finds a
	// transaction open (its records block read_committed readers of the
	// partitions it wrote until it is aborted), as it would in production.
	lctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		rec := w.deposits(topics.Commands, "live-load")
		for i := 0; ; i += 10 {
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
			}
			for j := range 10 {
				prod.Produce(lctx, rec(i+j), nil)
			}
		}
	}()

	for round := 0; round < o.LivenessRounds; round++ {
		for _, dead := range []bool{false, true} {
			if err := settled(); err != nil {
				return res, fmt.Errorf("round %d: %w", round+1, err)
			}
			time.Sleep(time.Second) // let transactions of the load be open
			victimID := ids[round%len(ids)]
			if dead {
				victimID = ids[(round+1)%len(ids)]
			}
			victim := workers[victimID]
			parts := victim.assignment()
			// The case that matters is a SIGKILL in the middle of a
			// transaction that wrote replies: freeze the victim until it
			// is caught with one open (or give up after a few seconds and
			// kill it anyway).
			freezeInTransaction(ctx, adm, victim, group+"-"+victimID, topics.Replies)
			began := time.Now()
			victim.kill()
			delete(workers, victimID)
			leftOpen, holdsReplies := false, false
			if d, err := adm.DescribeTransactions(ctx, group+"-"+victimID); err == nil {
				for _, t := range d {
					if t.State == "Ongoing" {
						leftOpen = true
						_, holdsReplies = t.Topics[topics.Replies]
					}
				}
			}
			if !dead {
				if workers[victimID], err = spawn(victimID); err != nil {
					return res, err
				}
			}
			var aborted atomic.Int64
			if leftOpen {
				wctx, stopWatch := context.WithCancel(ctx)
				defer stopWatch()
				go watchAbort(wctx, adm, group+"-"+victimID, began, &aborted)
			}
			if err := probe(); err != nil {
				return res, fmt.Errorf("round %d: %w", round+1, err)
			}
			s := livenessSample{total: time.Since(began), leftOpen: leftOpen, holdsReplies: holdsReplies, aborted: time.Duration(aborted.Load())}
			time.Sleep(300 * time.Millisecond) // the children's reports of those moments are on their way
			if dead {
				steps(slices.Collect(maps.Values(workers)), &s, began, parts)
				res.dead = append(res.dead, s)
				logf("liveness round %d: %s left dead (partitions %v): every partition answered after %s", round+1, victimID, parts, s)
				if workers[victimID], err = spawn(victimID); err != nil {
					return res, err
				}
			} else {
				steps([]*watchedChild{workers[victimID]}, &s, began, parts)
				res.restart = append(res.restart, s)
				logf("liveness round %d: %s restarted at once (partitions %v): every partition answered after %s", round+1, victimID, parts, s)
			}
		}
	}
	return res, nil
}

// durations of the samples' totals, sorted.
func totals(ss []livenessSample) []time.Duration {
	out := make([]time.Duration, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.total)
	}
	slices.Sort(out)
	return out
}

// livenessRows are the table rows of a liveness result.
func (l *livenessResult) rows(row func(...string)) {
	for _, x := range []struct {
		name    string
		samples []livenessSample
		target  time.Duration
	}{
		{"SIGKILL + immediate restart of the same instance", l.restart, 3 * time.Second},
		{fmt.Sprintf("SIGKILL, worker left dead (session timeout %v)", l.session), l.dead, l.session + 2*time.Second},
	} {
		if len(x.samples) == 0 {
			continue
		}
		t := totals(x.samples)
		worst := x.samples[0]
		for _, s := range x.samples {
			if s.total > worst.total {
				worst = s
			}
		}
		var each []string
		for _, d := range t {
			each = append(each, fmt.Sprintf("%.2f", d.Seconds()))
		}
		med := t[len(t)/2]
		if len(t)%2 == 0 {
			med = (t[len(t)/2-1] + t[len(t)/2]) / 2
		}
		met := "met"
		if t[len(t)-1] > x.target {
			met = "missed"
		}
		row(fmt.Sprintf("liveness: %s, until every partition answered (%d rounds)", x.name, len(t)),
			fmt.Sprintf("median %.2f s, worst %.2f s [%s s]; worst: %s", med.Seconds(), t[len(t)-1].Seconds(), strings.Join(each, ", "), worst),
			fmt.Sprintf("worst = %.2fx target (%s)", float64(t[len(t)-1])/float64(x.target), met),
			fmt.Sprintf("every round <= %v", x.target))
	}
}

// freezeInTransaction SIGSTOPs the child at random moments until its
// transaction is open and has written to topic, and returns with the child
// stopped: true if it was caught so, false if it was not within 5 s.
func freezeInTransaction(ctx context.Context, adm *kadm.Client, c *watchedChild, txnID, topic string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		_ = c.cmd.Process.Signal(syscall.SIGSTOP)
		d, err := adm.DescribeTransactions(ctx, txnID)
		if err == nil {
			for _, t := range d {
				if _, ok := t.Topics[topic]; ok && t.State == "Ongoing" {
					return true
				}
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		_ = c.cmd.Process.Signal(syscall.SIGCONT)
		time.Sleep(time.Duration(1+i%7) * time.Millisecond)
	}
}

// watchAbort stores into at the time from began until the transaction of
// txnID is no longer open, polling every 10 ms until ctx ends.
func watchAbort(ctx context.Context, adm *kadm.Client, txnID string, began time.Time, at *atomic.Int64) {
	for ctx.Err() == nil {
		d, err := adm.DescribeTransactions(ctx, txnID)
		if err == nil {
			open := false
			for _, t := range d {
				open = open || t.State == "Ongoing"
			}
			if !open {
				at.Store(int64(time.Since(began)))
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}
