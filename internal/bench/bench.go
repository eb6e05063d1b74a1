package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/topology"
)

// Options configures a run. Zero fields get the defaults of Quick.
type Options struct {
	// Brokers of the cluster; empty starts the embedded broker in-process.
	Brokers []string
	// ClientOpts are extra franz-go options (TLS, SASL) for every client.
	ClientOpts []kgo.Opt
	// Prefix of every topic and group, so runs never share state.
	Prefix string
	// Partitions of every topic. Quick 4, full 8.
	Partitions int32
	// Accounts is the number of aggregates of the throughput workload.
	Accounts int
	// Commands is the number of timed commands per throughput measurement.
	Commands int
	// MaxBatch and CommitInterval bound every transaction (processor and
	// pass-through alike). Default 1000 and 100ms.
	MaxBatch       int
	CommitInterval time.Duration
	// LatencyFractions of the measured maximum are the offered loads of the
	// latency measurements, each for LatencyDuration. Default 0.5 and 0.1.
	LatencyFractions []float64
	LatencyDuration  time.Duration
	// LatencyMax, when positive, is the rate (commands/s) the latency
	// fractions are of, instead of the processor's rate measured in the
	// same run: runs of different builds then offer the same load.
	LatencyMax float64
	// LatencyCPUProfile, when set, receives a CPU profile of the latency
	// loads (the client, the processor and the embedded broker share the
	// process and all show up in it).
	LatencyCPUProfile io.Writer
	// LatencyLinger, when positive, is the latency client's producer
	// linger (kgo.ProducerLinger; default client.DefaultLinger).
	LatencyLinger time.Duration
	// RestartAggregates is the size of the store of the restart, restore
	// and memory measurements.
	RestartAggregates int
	// Rounds of the throughput measurements (processor, pass-throughs,
	// goka); the table reports medians and each round's ratios. Quick 1,
	// full 3.
	Rounds int
	// LivenessRounds of the liveness measurement (liveness.go): each round
	// SIGKILLs a worker and restarts it at once, then SIGKILLs one and
	// leaves it dead. Quick 2, full 5.
	LivenessRounds int
	// Skip names measurements to leave out: "goka", "latency", "restart",
	// "projector", "history", "liveness", "personal".
	Skip []string
	// WorkDir holds state directories; default a temporary directory.
	WorkDir string
	// Timeout bounds each wait. Default 10 minutes.
	Timeout time.Duration
	// LogOut receives the processors' warnings. Default io.Discard.
	LogOut io.Writer
	// CPUProfile, when set, receives a CPU profile of the processor's timed
	// throughput phase (the embedded broker and the producer run in the same
	// process and show up in it too).
	CPUProfile io.Writer
	// ProjectorCPUProfile, when set, receives a CPU profile of the first
	// round's projector catch-up (the broker runs in the same process too).
	ProjectorCPUProfile io.Writer
	// BrokerCompaction is how often the embedded broker compacts its
	// compacted topics on its own. kfake does it on its single event loop,
	// blocking every request for the whole pass (measured: see
	// BENCHMARKS.md), where Kafka's log cleaner runs beside request
	// handling; so by default (0) the bench turns the periodic pass off and
	// compacts explicitly, timed, before each latency load and before the
	// restart measurements. A positive value keeps kfake's periodic pass at
	// that interval (the behaviour of `kcqrs broker`, 30s), to measure it.
	BrokerCompaction time.Duration
	// HistoryEvents is the size of the events partition of the history
	// measurement (issue 16). Quick 100000, full 1000000.
	HistoryEvents int
	// UpkeepPairs is the number of alternated pairs (without, with the
	// indexer; the order swapped every pair) behind the index upkeep rows,
	// reported as the median of the pairs' ratios. Default 3.
	UpkeepPairs int
	// PersonalOnly runs nothing but the personal-data pairs (personal.go)
	// in each round: for measuring that ratio alone.
	PersonalOnly bool
	// PersonalPairs is how many alternated pairs a round measures; default
	// personalPairs.
	PersonalPairs int
	// PersonalCPUProfile, when set, is a path prefix: each personal-data
	// contender writes a CPU profile of its timed phase to prefix +
	// contender name + ".pprof" (the broker and producer show up too).
	PersonalCPUProfile string
	// compact runs one compaction pass of the embedded broker (nil
	// otherwise, or when its periodic pass is on).
	compact func()
}

// Quick is the CI smoke configuration: every measurement, small sizes.
func Quick() Options {
	return Options{Partitions: 4, Accounts: 1000, Commands: 20000, RestartAggregates: 20000, LatencyDuration: 3 * time.Second, Rounds: 1, HistoryEvents: 100000, LivenessRounds: 2}
}

// Full is the configuration behind BENCHMARKS.md.
func Full() Options {
	return Options{Partitions: 8, Accounts: 10000, Commands: 200000, RestartAggregates: 1000000, LatencyDuration: 20 * time.Second, Rounds: 3, HistoryEvents: 1000000, LivenessRounds: 5}
}

func (o *Options) setDefaults() {
	q := Quick()
	if o.Partitions == 0 {
		o.Partitions = q.Partitions
	}
	if o.Accounts == 0 {
		o.Accounts = q.Accounts
	}
	if o.Commands == 0 {
		o.Commands = q.Commands
	}
	if o.RestartAggregates == 0 {
		o.RestartAggregates = q.RestartAggregates
	}
	if o.Rounds == 0 {
		o.Rounds = q.Rounds
	}
	if o.HistoryEvents == 0 {
		o.HistoryEvents = q.HistoryEvents
	}
	if o.UpkeepPairs <= 0 {
		o.UpkeepPairs = 3
	}
	if o.LivenessRounds == 0 {
		o.LivenessRounds = q.LivenessRounds
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 1000
	}
	if o.CommitInterval == 0 {
		o.CommitInterval = 100 * time.Millisecond
	}
	if len(o.LatencyFractions) == 0 {
		o.LatencyFractions = []float64{0.5, 0.1}
	}
	if o.LatencyDuration == 0 {
		o.LatencyDuration = q.LatencyDuration
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Prefix == "" {
		o.Prefix = fmt.Sprintf("bench-%d-", time.Now().Unix())
	}
}

func (o *Options) logOut() io.Writer {
	if o.LogOut == nil {
		return io.Discard
	}
	return o.LogOut
}

func (o *Options) clientOpts() []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...)}, o.ClientOpts...)
}

func (o *Options) skip(name string) bool {
	for _, s := range o.Skip {
		if s == name {
			return true
		}
	}
	return false
}

// Results are one run's measurements.
type Results struct {
	Options   Options
	Embedded  bool
	Shape     outputShape
	Processor float64 // commands/s
	Ceiling   float64 // raw transactional pass-through, commands/s
	RawALO    float64 // raw at-least-once pass-through, commands/s
	Goka      float64 // commands/s; 0 when skipped
	Latency   []latencyResult
	// Compactions are the embedded broker's explicit compaction passes
	// before each latency load (each blocked its event loop that long).
	Compactions []time.Duration
	Restart     *restartResult
	History     *historyResult
	Liveness    *livenessResult
	Rounds      []roundResult
	Took        time.Duration
}

// roundResult is one round's throughputs, commands/s.
type roundResult struct {
	Processor, Ceiling, RawALO, Goka float64
	CatchUp                          catchUpResult
	Personal, PersonalPlain          float64   // processor with personal data on, and its plain pair (personal.go); 0 when skipped
	PersonalRatios                   []float64 // each alternated pair's ratio (personal.go)

	// CPU time of the whole process per timed command (throughputCPU).
	ProcessorCPU, CeilingCPU time.Duration
}

// median of f over the rounds.
func median(rs []roundResult, f func(roundResult) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// Run measures everything o asks for and returns the results; progress goes
// to progress.
func Run(ctx context.Context, o Options, progress io.Writer) (*Results, error) {
	o.setDefaults()
	if o.PersonalOnly {
		o.Skip = append(o.Skip, "history", "restart", "liveness")
	}
	start := time.Now()
	res := &Results{}
	logf := func(format string, args ...any) {
		fmt.Fprintf(progress, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	if len(o.Brokers) == 0 {
		every := o.BrokerCompaction
		if every <= 0 {
			every = 24 * time.Hour
		}
		var c *kfake.Cluster
		var err error
		pprof.Do(ctx, pprof.Labels("who", "broker"), func(context.Context) {
			c, err = embedded.Start(embedded.Options{CompactionIntervalMs: int(every / time.Millisecond)})
		})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		o.Brokers = c.ListenAddrs()
		res.Embedded = true
		if o.BrokerCompaction <= 0 {
			o.compact = c.Compact
		}
	}
	if o.WorkDir == "" {
		dir, err := os.MkdirTemp("", "kcqrs-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		o.WorkDir = dir
	}
	res.Options = o
	admCl, err := kgo.NewClient(o.clientOpts()...)
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	prod, err := kgo.NewClient(append(o.clientOpts(), kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		return nil, err
	}
	defer prod.Close()
	w, err := newWorkload(o.Accounts)
	if err != nil {
		return nil, err
	}

	// Rounds of processor, pass-throughs and goka, one after the other: the
	// machine's load changes between phases, so each round gives its own
	// ratios, and the table reports the medians.
	for round := 0; round < o.Rounds; round++ {
		var rd roundResult
		rp := fmt.Sprintf("r%d-", round)
		first := round == 0
		if o.PersonalOnly {
			if rd.Personal, rd.PersonalPlain, rd.PersonalRatios, err = measurePersonal(ctx, &o, w, prod, rp, logf); err != nil {
				return nil, err
			}
			logf("processor with personal data: %.0f commands/s, its plain pair %.0f (median of the pairs' ratios %.2fx)", rd.Personal, rd.PersonalPlain, medianOf(rd.PersonalRatios))
			res.Rounds = append(res.Rounds, rd)
			continue
		}
		// 1. The processor.
		logf("round %d: processor: %d accounts, %d commands, %d partitions", round+1, o.Accounts, o.Commands, o.Partitions)
		ptopics := topicsFor(o.Prefix + rp + "proc-")
		stages := newStageRecorder()
		proc, err := startProcessor(&o, ptopics, o.Prefix+rp+"proc-processor", "bench-0", filepath.Join(o.WorkDir, rp+"proc"),
			func(c *topology.Config) { c.Observer = stages })
		if err != nil {
			return nil, err
		}
		processed := proc.processed
		if o.CPUProfile != nil && first {
			// Profile only the timed part: start once the warm-up is through.
			var profiling bool
			processed = func() (int64, error) {
				n, err := proc.processed()
				if !profiling && n >= int64(o.Accounts) {
					profiling = true
					if perr := pprof.StartCPUProfile(o.CPUProfile); perr != nil {
						return n, perr
					}
				}
				return n, err
			}
		}
		rd.Processor, rd.ProcessorCPU, err = w.throughputCPU(ctx, prod, ptopics.Commands, "proc", o.Commands, o.Timeout, processed)
		if o.CPUProfile != nil && first {
			pprof.StopCPUProfile()
		}
		if err != nil {
			_ = proc.stop()
			return nil, fmt.Errorf("processor: %w", err)
		}
		s := proc.Stats()
		if first {
			res.Shape.cmds = float64(s.Commands)
			res.Shape.eventsPerCommand = float64(s.Events) / float64(s.Commands)
			res.Shape.snapshotsPerCommand = float64(s.Snapshots) / float64(s.Commands)
		}
		logf("processor: %.0f commands/s (%d transactions), %.1f µs CPU per command", rd.Processor, s.Transactions, us(rd.ProcessorCPU))

		// The latency at a fraction of that maximum, same processor.
		if !o.skip("latency") && first {
			if o.LatencyCPUProfile != nil {
				if err := pprof.StartCPUProfile(o.LatencyCPUProfile); err != nil {
					return nil, err
				}
			}
			for i, f := range o.LatencyFractions {
				rate := rd.Processor * f
				if o.LatencyMax > 0 {
					rate = o.LatencyMax * f
				}
				if o.compact != nil {
					t := time.Now()
					o.compact()
					res.Compactions = append(res.Compactions, time.Since(t))
					logf("broker: compaction pass took %v (its event loop answered nothing meanwhile)", time.Since(t))
				}
				logf("latency: %.0f commands/s offered for %v", rate, o.LatencyDuration)
				before := proc.Stats()
				lr, err := measureLatency(ctx, &o, w, stages, ptopics.Commands, ptopics.Replies, fmt.Sprintf("lat%d", i), rate, o.LatencyDuration)
				if err != nil {
					_ = proc.stop()
					return nil, fmt.Errorf("latency: %w", err)
				}
				lr.fraction = f
				after := proc.Stats()
				lr.txns, lr.txnCommands = after.Transactions-before.Transactions, after.Commands-before.Commands
				res.Latency = append(res.Latency, lr)
				logf("latency: p50 %v p99 %v p99.9 %v", lr.p50, lr.p99, lr.p999)
				logf("latency stages (p50/p99/median of the slowest 1%%): %v", lr.stages)
				logf("latency: %s", lr.stalls)
				logf("latency: the processor ran %d transactions, %.0f commands each on average", lr.txns, float64(lr.txnCommands)/float64(max(lr.txns, 1)))
			}
			if o.LatencyCPUProfile != nil {
				pprof.StopCPUProfile()
			}
		}
		if err := proc.stop(); err != nil {
			return nil, fmt.Errorf("processor: %w", err)
		}
		if !o.skip("personal") {
			if rd.Personal, rd.PersonalPlain, rd.PersonalRatios, err = measurePersonal(ctx, &o, w, prod, rp, logf); err != nil {
				return nil, err
			}
			logf("processor with personal data: %.0f commands/s, its plain pair %.0f (median of the pairs' ratios %.2fx)", rd.Personal, rd.PersonalPlain, medianOf(rd.PersonalRatios))
		}
		for _, t := range []struct {
			topic   string
			bytes   *int
			headers *int
		}{
			{ptopics.Events, &res.Shape.eventBytes, &res.Shape.eventHeaders},
			{ptopics.Replies, &res.Shape.replyBytes, &res.Shape.replyHeaders},
			{ptopics.Changelog, &res.Shape.snapshotBytes, new(int)},
		} {
			if !first {
				break
			}
			if *t.bytes, *t.headers, err = avgValueSize(ctx, o.clientOpts(), t.topic, 200); err != nil {
				return nil, err
			}
		}
		if first {
			logf("output shape: %s", res.Shape)
		}

		// 2. The ceiling: raw pass-through with the same outputs, then the same
		// at-least-once.
		for _, v := range []struct {
			name          string
			transactional bool
			dst           *float64
			cpu           *time.Duration
		}{{"ceiling", true, &rd.Ceiling, &rd.CeilingCPU}, {"alo", false, &rd.RawALO, nil}} {
			topics := topicsFor(o.Prefix + rp + v.name + "-")
			if _, err := topology.EnsureTopics(ctx, admCl, topics, o.Partitions, -1); err != nil {
				return nil, err
			}
			pt, err := startPassThrough(&o, topics, o.Prefix+rp+v.name, res.Shape, v.transactional)
			if err != nil {
				return nil, err
			}
			var cpu time.Duration
			*v.dst, cpu, err = w.throughputCPU(ctx, prod, topics.Commands, v.name, o.Commands, o.Timeout, pt.processed)
			pt.close()
			if err != nil {
				return nil, fmt.Errorf("%s pass-through: %w", v.name, err)
			}
			if v.cpu != nil {
				*v.cpu = cpu
			}
			logf("raw pass-through (%s): %.0f commands/s, %.1f µs CPU per command", v.name, *v.dst, us(cpu))
		}

		// 3. The goka peer.
		if !o.skip("goka") {
			topics := topicsFor(o.Prefix + rp + "goka-")
			if _, err := topology.EnsureTopics(ctx, admCl, topics, o.Partitions, -1); err != nil {
				return nil, err
			}
			gp, err := startGoka(&o, topics, o.Prefix+rp+"goka", filepath.Join(o.WorkDir, rp+"goka"))
			if err != nil {
				return nil, err
			}
			rd.Goka, err = w.throughput(ctx, prod, topics.Commands, "goka", o.Commands, o.Timeout, gp.processed)
			gp.stop()
			if err != nil {
				return nil, fmt.Errorf("goka: %w", err)
			}
			logf("goka: %.0f commands/s", rd.Goka)
		}

		// 4. Projector catch-up against a raw consume and goka's floor.
		if !o.skip("projector") {
			var prof io.Writer
			if round == 0 {
				prof = o.ProjectorCPUProfile
			}
			rd.CatchUp, err = runCatchUp(ctx, &o, adm, prod, round, prof)
			if err != nil {
				return nil, fmt.Errorf("projector catch-up: %w", err)
			}
			logf("projector catch-up: %.0f events/s (raw consume %.0f, goka floor %.0f)", rd.CatchUp.Projector, rd.CatchUp.Raw, rd.CatchUp.GokaNoop)
			logf("projector catch-up phases: %s", rd.CatchUp.Phases)
		}
		res.Rounds = append(res.Rounds, rd)
	}
	res.Processor = median(res.Rounds, func(r roundResult) float64 { return r.Processor })
	res.Ceiling = median(res.Rounds, func(r roundResult) float64 { return r.Ceiling })
	res.RawALO = median(res.Rounds, func(r roundResult) float64 { return r.RawALO })
	res.Goka = median(res.Rounds, func(r roundResult) float64 { return r.Goka })

	// One aggregate's history (history.go).
	if !o.skip("history") {
		hr, err := runHistory(ctx, &o, admCl, adm, w, prod, logf)
		if err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		res.History = &hr
	}

	// 4. Restarts, restore and memory, in child processes.
	if !o.skip("restart") {
		logf("restart: populating a store of %d aggregates in a child process", o.RestartAggregates)
		rr, err := runRestart(ctx, &o, adm, prod)
		if err != nil {
			return nil, fmt.Errorf("restart: %w", err)
		}
		res.Restart = &rr
		logf("restart: done")
	}

	// 5. Liveness: SIGKILLs of worker processes under load.
	if !o.skip("liveness") {
		logf("liveness: %d rounds of a SIGKILL with an immediate restart and a SIGKILL of a worker left dead", o.LivenessRounds)
		lr, err := runLiveness(ctx, &o, adm, prod, logf)
		if err != nil {
			return nil, fmt.Errorf("liveness: %w", err)
		}
		res.Liveness = &lr
	}
	res.Took = time.Since(start)
	return res, nil
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// latencyTarget is issue 15's target at an offered load: at 10% of the
// maximum or less, where batches are small and the commit interval is a
// bound, not a delay, p99 <= 25 ms; above, p99 <= 2x the commit interval.
func latencyTarget(fraction float64) string {
	if fraction <= 0.1 {
		return "p99 <= 25 ms"
	}
	return "p99 <= 2x commit interval"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// WriteTable prints the results as a Markdown table.
func (r *Results) WriteTable(out io.Writer) error {
	o := r.Options
	broker := "embedded kfake, in-process"
	if !r.Embedded {
		broker = strings.Join(o.Brokers, ",")
	}
	fmt.Fprintf(out, "kcqrs-bench: %s; %d partitions; %d accounts; %d timed commands per contender; transactions of at most %d commands or %v; GOMAXPROCS %d; took %v\n",
		broker, o.Partitions, o.Accounts, o.Commands, o.MaxBatch, o.CommitInterval, runtime.GOMAXPROCS(0), r.Took.Round(time.Second))
	fmt.Fprintf(out, "Pass-through output shape (measured from the processor's topics): %s\n\n", r.Shape)
	var table strings.Builder
	row := func(cells ...string) { fmt.Fprintln(&table, "| "+strings.Join(cells, " | ")+" |") }
	perRound := func(f func(roundResult) float64) string {
		var v []string
		for _, rd := range r.Rounds {
			v = append(v, fmt.Sprintf("%.0f", f(rd)))
		}
		return strings.Join(v, ", ")
	}
	ratios := func(a, b func(roundResult) float64) string {
		var v []string
		for _, rd := range r.Rounds {
			v = append(v, ratio(a(rd), b(rd)))
		}
		return strings.Join(v, ", ")
	}
	proc := func(rd roundResult) float64 { return rd.Processor }
	ceil := func(rd roundResult) float64 { return rd.Ceiling }
	alo := func(rd roundResult) float64 { return rd.RawALO }
	gk := func(rd roundResult) float64 { return rd.Goka }
	fmt.Fprintf(&table, "Throughputs are medians of %d rounds (each round's value in brackets); ratios are of the medians, each round's own ratio in brackets.\n\n", len(r.Rounds))
	row("measurement", "value", "ratio", "target")
	row("---", "---", "---", "---")
	row("processor throughput (EOS)", fmt.Sprintf("%.0f cmds/s [%s]", r.Processor, perRound(proc)), "", "")
	row("raw transactional pass-through", fmt.Sprintf("%.0f cmds/s [%s]", r.Ceiling, perRound(ceil)), "", "")
	row("ceiling ratio (processor / pass-through)", "", fmt.Sprintf("%s [%s]", ratio(r.Processor, r.Ceiling), ratios(proc, ceil)), ">= 0.6")
	if len(r.Rounds) > 0 && r.Rounds[0].ProcessorCPU > 0 {
		pc := func(rd roundResult) float64 { return us(rd.ProcessorCPU) }
		cc := func(rd roundResult) float64 { return us(rd.CeilingCPU) }
		perRound1 := func(f func(roundResult) float64) string {
			var v []string
			for _, rd := range r.Rounds {
				v = append(v, fmt.Sprintf("%.1f", f(rd)))
			}
			return strings.Join(v, ", ")
		}
		mp, mc := median(r.Rounds, pc), median(r.Rounds, cc)
		row("CPU per command, whole process (broker, producer, contender): processor / pass-through", fmt.Sprintf("%.1f µs [%s] / %.1f µs [%s]", mp, perRound1(pc), mc, perRound1(cc)), "", "")
		row("CPU ratio (pass-through / processor, per command)", "", fmt.Sprintf("%s [%s]", ratio(mc, mp), ratios(cc, pc)), "(info)")
	}
	row("raw at-least-once pass-through", fmt.Sprintf("%.0f cmds/s [%s]", r.RawALO, perRound(alo)), "", "")
	row("broker EOS cost (raw transactional / raw at-least-once)", "", fmt.Sprintf("%s [%s]", ratio(r.Ceiling, r.RawALO), ratios(ceil, alo)), "(info)")
	row("processor EOS vs at-least-once", "not measured: the processor has no at-least-once mode", "n/a", "(info)")
	if r.Goka > 0 {
		row("goka peer (at-least-once, group table)", fmt.Sprintf("%.0f cmds/s [%s]", r.Goka, perRound(gk)), "", "")
		row("peer ratio (processor / goka)", "", fmt.Sprintf("%s [%s]", ratio(r.Processor, r.Goka), ratios(proc, gk)), ">= 1.5")
	}
	if len(r.Rounds) > 0 && r.Rounds[0].Personal > 0 {
		r.personalRows(row, perRound)
	}
	if len(r.Rounds) > 0 && r.Rounds[0].CatchUp.Events > 0 {
		pj := func(rd roundResult) float64 { return rd.CatchUp.Projector }
		raw := func(rd roundResult) float64 { return rd.CatchUp.Raw }
		noop := func(rd roundResult) float64 { return rd.CatchUp.GokaNoop }
		mp, mr, mn := median(r.Rounds, pj), median(r.Rounds, raw), median(r.Rounds, noop)
		ev := r.Rounds[0].CatchUp.Events
		row(fmt.Sprintf("projector catch-up, %d account events into the three read models", ev), fmt.Sprintf("%.0f events/s [%s]", mp, perRound(pj)), "", ">= 100000 events/s")
		row("raw franz-go consume of the same events (read_committed)", fmt.Sprintf("%.0f events/s [%s]", mr, perRound(raw)), "", "")
		row("goka floor: a stateless goka processor counting the same events", fmt.Sprintf("%.0f events/s [%s]", mn, perRound(noop)), "", "")
		row("catch-up ratio (projector / goka floor)", "", fmt.Sprintf("%s [%s]", ratio(mp, mn), ratios(pj, noop)), ">= 0.5")
		row("catch-up ratio (projector / raw consume)", "", fmt.Sprintf("%s [%s]", ratio(mp, mr), ratios(pj, raw)), "(info)")
	}
	for _, l := range r.Latency {
		row(fmt.Sprintf("command-to-reply latency via client, %.0f cmds/s offered (%.0f%% of max) for %v: %d of %d answered (%d not within %v), last after %.1f s", l.rate, l.fraction*100, o.LatencyDuration, l.answered, l.sent, l.timedOut, replyTimeout, l.took.Seconds()),
			fmt.Sprintf("p50 %s, p99 %s, p99.9 %s", ms(l.p50), ms(l.p99), ms(l.p999)),
			fmt.Sprintf("p99 = %.2fx commit interval", float64(l.p99)/float64(o.CommitInterval)), latencyTarget(l.fraction))
		row(fmt.Sprintf("latency stages at %.0f%% of max: p50/p99/median of the slowest 1%% (%d of %d commands joined with the processor's stages)", l.fraction*100, l.stages.joined, l.answered),
			l.stages.String()+"; "+l.stalls+fmt.Sprintf("; the processor ran %d transactions of %.0f commands on average", l.txns, float64(l.txnCommands)/float64(max(l.txns, 1))), fmt.Sprintf("p99.9 = %.2fx commit interval", float64(l.p999)/float64(o.CommitInterval)), "p99.9 <= 4x commit interval")
	}
	if len(r.Compactions) > 0 {
		var v []string
		for _, d := range r.Compactions {
			v = append(v, ms(d))
		}
		row("embedded broker compaction pass before each latency load (kfake compacts on its only event loop, answering nothing meanwhile; its periodic pass is off during the loads)", strings.Join(v, ", "), "", "(info)")
	}
	if r.History != nil {
		r.historyRows(row)
	}
	if rr := r.Restart; rr != nil {
		rate := func(n int, s float64) string {
			if s == 0 {
				return "n/a"
			}
			return fmt.Sprintf("%.0f rec/s", float64(n)/s)
		}
		row(fmt.Sprintf("populate %d aggregates (child process)", rr.aggregates), fmt.Sprintf("%.1f s", rr.populateSeconds), "", "")
		row(fmt.Sprintf("peak RSS (VmHWM), processor populating %d aggregates", rr.aggregates), fmt.Sprintf("%.0f MiB before its clean stop, %.0f MiB including it", float64(rr.peakRSSKiB)/1024, float64(rr.stopRSSKiB)/1024), "", "< 256 MiB at 1M")
		row("changelog restore into Pebble (empty store; wall time from the first partition's start to the last one's end)", fmt.Sprintf("%d records in %.2f s = %s (partitions' own durations add up to %.2f s)", rr.coldRecords, rr.coldSeconds, rate(rr.coldRecords, rr.coldSeconds), rr.coldSummed), "", "")
		row("raw consume of the same changelog", fmt.Sprintf("%d records in %.2f s = %s", rr.rawRecords, rr.rawSeconds, rate(rr.rawRecords, rr.rawSeconds)), "", "")
		restoreRatio := "n/a"
		if rr.coldSeconds > 0 && rr.rawSeconds > 0 {
			restoreRatio = fmt.Sprintf("%.2f", (float64(rr.coldRecords)/rr.coldSeconds)/(float64(rr.rawRecords)/rr.rawSeconds))
		}
		row("restore ratio (restore / raw consume)", "", restoreRatio, ">= 0.7")
		for _, x := range []struct {
			name string
			run  restartRun
		}{{"after clean stop", rr.clean}, {"after SIGKILL mid-load", rr.killed}} {
			row("warm restart "+x.name,
				fmt.Sprintf("%d of %d changelog records read, catch-up %.3f s, first reply from every partition %.2f s", x.run.records, rr.changelogRecords, x.run.restoreSeconds, x.run.firstReplies),
				fmt.Sprintf("%.4f%% of changelog", 100*float64(x.run.records)/float64(max(rr.changelogRecords, 1))), "< 1% of changelog")
		}
	}
	if r.Liveness != nil {
		r.Liveness.rows(row)
	}
	_, err := io.WriteString(out, table.String())
	return err
}

// us is d in microseconds.
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
