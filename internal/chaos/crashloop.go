package chaos

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/topology"
)

// progress measures liveness from the clients' side: for each command
// partition, the longest time during which at least one command for it was
// waiting and no reply for it arrived. A partition nobody sends to is not
// stalled, it is idle; a partition whose commands are answered, however
// late each one, makes progress.
type progress struct {
	mu    sync.Mutex
	now   func() time.Time
	parts map[int32]*partProgress
}

type partProgress struct {
	inflight  int
	since     time.Time // start of the current stretch without a reply
	maxGap    time.Duration
	maxGapEnd time.Time
}

func newProgress() *progress { return &progress{now: time.Now, parts: map[int32]*partProgress{}} }

func (pr *progress) part(p int32) *partProgress {
	pp := pr.parts[p]
	if pp == nil {
		pp = &partProgress{}
		pr.parts[p] = pp
	}
	return pp
}

// begin: a command for partition p is now waiting.
func (pr *progress) begin(p int32) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pp := pr.part(p)
	if pp.inflight == 0 {
		pp.since = pr.now()
	}
	pp.inflight++
}

// end: a command for partition p got its reply (answered true) or its
// sender gave up (false).
func (pr *progress) end(p int32, answered bool) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pp := pr.part(p)
	now := pr.now()
	pp.note(now) // a sender giving up waited without progress too
	if answered {
		pp.since = now
	}
	pp.inflight--
}

func (pp *partProgress) note(now time.Time) {
	if pp.inflight > 0 {
		if g := now.Sub(pp.since); g > pp.maxGap {
			pp.maxGap, pp.maxGapEnd = g, now
		}
	}
}

// worst returns the longest gap of any partition (including a stretch still
// open now), the partition and when it ended.
func (pr *progress) worst() (time.Duration, int32, time.Time) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	now := pr.now()
	var (
		gap  time.Duration
		part int32 = -1
		at   time.Time
	)
	keys := make([]int32, 0, len(pr.parts))
	for p := range pr.parts {
		keys = append(keys, p)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, p := range keys {
		pp := pr.parts[p]
		pp.note(now)
		if pp.maxGap > gap {
			gap, part, at = pp.maxGap, p, pp.maxGapEnd
		}
	}
	return gap, part, at
}

// crashLoop is the liveness mode: every 5-10 s a random worker is
// SIGKILLed. One kill in three restarts it at once and measures how long
// until every partition answers a probe again; one in three leaves it dead
// until every partition answered (the survivors took over) and restarts it
// then; the others just restart it (a supervisor restarting a crashed pod).
// The clients' workload runs throughout; progress records the longest
// stretch any partition had a waiting command and no reply.
func (r *run) crashLoop(ctx context.Context, cl *client.Client, accounts []string) {
	interval := func() time.Duration { return r.between(5*time.Second, 10*time.Second) }
	next := time.Now().Add(interval())
	for i := 0; r.sum.Kills < int64(r.o.Kills) && ctx.Err() == nil; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		next = time.Now().Add(interval())
		w := r.workers[r.intn(len(r.workers))]
		kind := i % 3
		began := time.Now()
		w.kill()
		r.sum.Kills++
		r.logf("SIGKILL %s (kill %d/%d, %s)", w.id, r.sum.Kills, r.o.Kills, [...]string{"restarted at once, probed", "left dead, probed", "restarted at once"}[kind])
		if kind != 1 {
			if err := w.start(); err != nil {
				r.violate("restart %s: %v", w.id, err)
			}
		}
		if kind == 2 {
			continue
		}
		d, ok := r.probeAll(ctx, cl, accounts, began)
		if ok {
			if kind == 0 {
				r.sum.RestartFailovers = append(r.sum.RestartFailovers, d)
			} else {
				r.sum.Failovers = append(r.sum.Failovers, d)
			}
			r.logf("every partition answered %v after the SIGKILL of %s (restarted at once: %v)", d.Round(time.Millisecond), w.id, kind == 0)
		}
		if kind == 1 {
			if err := w.start(); err != nil {
				r.violate("restart %s: %v", w.id, err)
			}
		}
	}
}

// probeAll sends one deposit to an account of every partition at once and
// returns the time from began until the last of them was answered.
func (r *run) probeAll(ctx context.Context, cl *client.Client, accounts []string, began time.Time) (time.Duration, bool) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		last time.Duration
		all  = true
	)
	r.mu.Lock()
	r.probes++
	n := r.probes
	r.mu.Unlock()
	for p := range r.o.Partitions {
		acct := accountOn(accounts, p, r.o.Partitions)
		if topology.PartitionFor([]byte(acct), r.o.Partitions) != p {
			continue // no account of the workload lives there
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok := r.send(ctx, cl, outcome{account: acct, typ: "Deposit", amount: 1}, fmt.Sprintf("probe-%d-p%d", n, p))
			mu.Lock()
			defer mu.Unlock()
			all = all && ok
			last = max(last, time.Since(began))
		}()
	}
	wg.Wait()
	return last, all
}

// watchGroups polls the state of the workers' groups (the processor's and
// the saga's) every 500 ms until ctx ends, logs every change, and records
// for each group the longest time it spent out of the Stable state and the
// most members it had: the symptom of a group that cannot finish a
// rebalance while members keep coming.
func (r *run) watchGroups(ctx context.Context) {
	type seen struct {
		state   string
		members int
		since   time.Time
	}
	last := map[string]*seen{}
	observe := func(g, state string, members int) {
		now := time.Now()
		s := last[g]
		if s == nil {
			s = &seen{since: now}
			last[g] = s
		}
		if state != s.state || members != s.members {
			r.logf("group %s: %s with %d members", g, state, members)
		}
		r.mu.Lock()
		if members > r.sum.GroupMaxMembers[g] {
			r.sum.GroupMaxMembers[g] = members
		}
		if state != s.state {
			s.since = now
		}
		if state != "Stable" && state != "" {
			r.sum.GroupMaxUnstable[g] = max(r.sum.GroupMaxUnstable[g], now.Sub(s.since))
		}
		r.mu.Unlock()
		s.state, s.members = state, members
	}
	groups := []string{group, "kcqrs-transfers"}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		classic, err := r.adm.DescribeGroups(dctx, groups...)
		var next []string
		if err == nil {
			for _, g := range groups {
				d := classic[g]
				if d.Err != nil || d.State == "" || d.State == "Dead" || (len(d.Members) == 0 && d.State != "Empty") {
					next = append(next, g)
					continue
				}
				observe(g, d.State, len(d.Members))
			}
		}
		if len(next) > 0 {
			// A KIP-848 group answers only ConsumerGroupDescribe.
			if cg, err := r.adm.DescribeConsumerGroups(dctx, next...); err == nil {
				for _, g := range next {
					if d, ok := cg[g]; ok && d.Err == nil {
						observe(g, d.State, len(d.Members))
					}
				}
			}
		}
		cancel()
	}
}

// setConsumerGroupTimeouts sets the KIP-848 group configs of the workers'
// groups: under the consumer protocol the session timeout and the
// heartbeat interval are the broker's (group.consumer.session.timeout.ms,
// 45 s by default, and group.consumer.heartbeat.interval.ms, 5 s), not the
// client's; a group may lower them within the broker's minimums.
func (r *run) setConsumerGroupTimeouts(ctx context.Context, session, heartbeat time.Duration) error {
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	for _, g := range []string{group, "kcqrs-transfers"} {
		res := kmsg.NewIncrementalAlterConfigsRequestResource()
		res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
		res.ResourceName = g
		for _, c := range []struct {
			name string
			v    time.Duration
		}{{"consumer.session.timeout.ms", session}, {"consumer.heartbeat.interval.ms", heartbeat}} {
			cfg := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
			cfg.Name = c.name
			cfg.Value = kmsg.StringPtr(strconv.FormatInt(c.v.Milliseconds(), 10))
			res.Configs = append(res.Configs, cfg)
		}
		req.Resources = append(req.Resources, res)
	}
	resp, err := req.RequestWith(ctx, r.admCl)
	if err != nil {
		return fmt.Errorf("chaos: group configs: %w", err)
	}
	for _, res := range resp.Resources {
		if err := kerr.ErrorForCode(res.ErrorCode); err != nil {
			return fmt.Errorf("chaos: group config of %s: %w", res.ResourceName, err)
		}
	}
	r.logf("KIP-848 group configs: session timeout %v, heartbeat interval %v", session, heartbeat)
	return nil
}
