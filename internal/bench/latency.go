package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

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
func measureLatency(ctx context.Context, o *Options, w *workload, commandTopic, replyTopic, run string, rate float64, d time.Duration) (latencyResult, error) {
	res := latencyResult{rate: rate}
	cl, err := client.New(ctx, client.Config{Brokers: o.Brokers, CommandTopic: commandTopic, ReplyTopic: replyTopic, ClientOpts: o.ClientOpts})
	if err != nil {
		return res, err
	}
	defer cl.Close()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		firstErr  error
		wg        sync.WaitGroup
	)
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	n := int(d.Seconds() * rate)
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func(i int, at time.Time) {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, replyTimeout)
			defer cancel()
			rep, err := cl.Send(sctx, client.Command{
				AggregateType: "account", AggregateID: accountID(i % w.accounts), Type: "Deposit",
				ID: fmt.Sprintf("%s-lat-%d", run, i), Avro: w.deposit,
			})
			took := time.Since(at)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && rep.Status != wire.StatusAccepted {
				err = fmt.Errorf("reply %s %s", rep.Status, rep.Message)
			}
			switch {
			case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
				// Overload, not failure: counted as unanswered in time.
				res.timedOut++
			case err != nil:
				if firstErr == nil {
					firstErr = err
				}
			default:
				latencies = append(latencies, took)
			}
		}(i, at)
	}
	wg.Wait()
	res.took = time.Since(start)
	res.sent, res.answered = n, len(latencies)
	if firstErr != nil {
		return res, firstErr
	}
	slices.Sort(latencies)
	res.p50, res.p99, res.p999 = percentile(latencies, 0.50), percentile(latencies, 0.99), percentile(latencies, 0.999)
	return res, nil
}
