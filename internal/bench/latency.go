package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/wire"
)

// latencyResult holds command-to-reply latencies at an offered load.
type latencyResult struct {
	rate           float64 // offered commands/s
	fraction       float64 // of the measured maximum
	took           time.Duration
	timedOut       int // no reply within replyTimeout
	sent, answered int
	p50, p99, p999 time.Duration
	stages         stageBreakdown // stages.go
	stalls         string         // stages.go's stallWatch
	// transactions the processor ran during the load, and their commands
	txns, txnCommands int64
}

// replyTimeout is how long one command may wait for its reply before it
// counts as unanswered.
const replyTimeout = 60 * time.Second

// percentile returns the q-quantile (0..1) of sorted durations (nearest
// rank); 0 for none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// measureLatency sends Deposit commands through client.Client at a fixed
// rate (open loop: each command is timed from its scheduled send time, so
// a stall counts against the stall and is not hidden by a slower sender)
// for d, and returns the latency distribution of the replies.
func measureLatency(ctx context.Context, o *Options, w *workload, rec *stageRecorder, commandTopic, replyTopic, run string, rate float64, d time.Duration) (latencyResult, error) {
	res := latencyResult{rate: rate}
	// Profiler labels (go tool pprof -tags): who=client for the client's
	// goroutines (its reply consumer), who=generator for this one and the
	// producer goroutines it starts through SendAsync.
	var cl *client.Client
	var err error
	pprof.Do(ctx, pprof.Labels("who", "client"), func(ctx context.Context) {
		opts := o.ClientOpts
		if o.LatencyLinger > 0 {
			opts = append(slices.Clip(opts), kgo.ProducerLinger(o.LatencyLinger))
		}
		cl, err = client.New(ctx, client.Config{Brokers: o.Brokers, CommandTopic: commandTopic, ReplyTopic: replyTopic, ClientOpts: opts})
	})
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("who", "generator")))
	defer pprof.SetGoroutineLabels(ctx)
	if err != nil {
		return res, err
	}
	defer cl.Close()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		traces    []timedTrace
		firstErr  error
		wg        sync.WaitGroup
	)
	rec.start()
	defer rec.stop()
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	n := int(d.Seconds() * rate)
	// One deadline for every command (the last one's), not a timer per
	// command: the load generator shares the processor's CPU, and a
	// context per command was a fifth of its cost. A reply later than
	// replyTimeout after its schedule still counts as unanswered.
	sctx, cancel := context.WithDeadline(ctx, start.Add(d+replyTimeout))
	defer cancel()
	stalls := watchStalls(start)
	// The generator's own work per command stays small (it shares the
	// CPU with what it measures): the account ids made once, the command
	// ids without fmt, the result slices sized once.
	accounts := make([]string, w.accounts)
	for i := range accounts {
		accounts[i] = accountID(i)
	}
	idPrefix := run + "-lat-"
	latencies = make([]time.Duration, 0, n)
	traces = make([]timedTrace, 0, n)
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		// SendAsync: no goroutine per command in flight, so a backlog of
		// replies does not turn into a pile of goroutine stacks that the
		// process (the broker and processor too) then has to scan.
		cl.SendAsync(sctx, client.Command{
			AggregateType: "account", AggregateID: accounts[i%len(accounts)], Type: "Deposit",
			ID: idPrefix + strconv.Itoa(i), Avro: w.deposit,
		}, func(rep wire.Reply, tr client.Trace, err error) {
			defer wg.Done()
			took := time.Since(at)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && rep.Status != wire.StatusAccepted {
				err = fmt.Errorf("reply %s %s", rep.Status, rep.Message)
			}
			switch {
			case err == nil && took > replyTimeout, errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
				// Overload, not failure: counted as unanswered in time.
				res.timedOut++
			case err != nil:
				if firstErr == nil {
					firstErr = err
				}
			default:
				latencies = append(latencies, took)
				traces = append(traces, timedTrace{at, tr})
			}
		})
	}
	wg.Wait()
	res.took = time.Since(start)
	stalls.stop()
	res.stalls = stalls.String()
	res.sent, res.answered = n, len(latencies)
	if firstErr != nil {
		return res, firstErr
	}
	var samples []sample
	for _, t := range traces {
		ps, ok := rec.get(t.tr.Partition, t.tr.Offset)
		if s, ok := newSample(start, t.at, t.tr, ps, ok); ok {
			samples = append(samples, s)
		}
	}
	res.stages = breakdown(samples)
	slices.Sort(latencies)
	res.p50, res.p99, res.p999 = percentile(latencies, 0.50), percentile(latencies, 0.99), percentile(latencies, 0.999)
	return res, nil
}

// timedTrace is an answered command's schedule and client trace.
type timedTrace struct {
	at time.Time
	tr client.Trace
}
