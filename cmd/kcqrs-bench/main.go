// Command kcqrs-bench measures the processor against a raw franz-go
// transactional pass-through (the ceiling), an at-least-once pass-through,
// an idiomatic goka peer, and its own restore, restart, latency and memory
// figures, in one run, and prints a table of ratios. See BENCHMARKS.md.
//
//	kcqrs-bench [--full] [--brokers host:port,...] [flags]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/kcqrs/kcqrs/internal/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		// A processor process started by the restart measurement.
		if err := bench.RunChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "kcqrs-bench child:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kcqrs-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	full := flag.Bool("full", false, "the full run of BENCHMARKS.md (default: the quick CI smoke run)")
	brokers := flag.String("brokers", "", "comma-separated seed brokers; empty runs the embedded broker in-process")
	partitions := flag.Int("partitions", 0, "partitions per topic (quick 4, full 8)")
	accounts := flag.Int("accounts", 0, "aggregates of the throughput workload (quick 1000, full 10000)")
	commands := flag.Int("commands", 0, "timed commands per contender (quick 20000, full 200000)")
	restartAggs := flag.Int("restart-aggregates", 0, "aggregates of the restart/restore/memory store (quick 20000, full 1000000)")
	skip := flag.String("skip", "", "comma-separated measurements to leave out: goka, latency, restart, projector, history, liveness, personal")
	livenessRounds := flag.Int("liveness-rounds", 0, "rounds of the liveness measurement, each a SIGKILL with an immediate restart and one of a worker left dead (quick 2, full 5)")
	out := flag.String("out", "", "also write the table to this file")
	verbose := flag.Bool("v", false, "show the processors' warnings")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the processor's timed throughput phase to this file")
	projProfile := flag.String("projector-cpuprofile", "", "write a CPU profile of the first round's projector catch-up to this file")
	latDuration := flag.Duration("latency-duration", 0, "how long each latency load runs (quick 3s, full 20s)")
	latFractions := flag.String("latency-fractions", "", "comma-separated offered loads of the latency measurement, as fractions of the measured maximum (default 0.5,0.1)")
	latMax := flag.Float64("latency-max", 0, "commands/s the latency fractions are of (default: the processor's rate measured in the same run)")
	latProfile := flag.String("latency-cpuprofile", "", "write a CPU profile of the latency loads to this file")
	latLinger := flag.Duration("latency-linger", 0, "the latency client's producer linger (default: the client's, client.DefaultLinger)")
	rounds := flag.Int("rounds", 0, "rounds of the throughput measurements (quick 1, full 3)")
	historyEvents := flag.Int("history-events", 0, "events in the partition of the history measurement (quick 100000, full 1000000)")
	upkeepPairs := flag.Int("upkeep-pairs", 0, "alternated pairs (without, with the history indexer) behind the index upkeep rows, reported as medians of the pairs' ratios (default 3)")
	brokerCompaction := flag.Duration("broker-compaction-every", 0, "keep the embedded broker's periodic compaction pass at this interval (blocks its event loop; default: off, explicit passes between measurements)")
	personalOnly := flag.Bool("personal-only", false, "run only the personal-data pairs (personal vs plain processor) in each round")
	personalPairs := flag.Int("personal-pairs", 0, "alternated personal-data pairs per round (default 2)")
	personalProfile := flag.String("personal-cpuprofile", "", "path prefix: each personal-data contender writes a CPU profile of its timed phase to prefix+name+.pprof")
	flag.Parse()

	o := bench.Quick()
	if *full {
		o = bench.Full()
	}
	if *brokers != "" {
		o.Brokers = strings.Split(*brokers, ",")
	}
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	set(&o.Accounts, *accounts)
	set(&o.Commands, *commands)
	set(&o.RestartAggregates, *restartAggs)
	set(&o.HistoryEvents, *historyEvents)
	set(&o.UpkeepPairs, *upkeepPairs)
	set(&o.LivenessRounds, *livenessRounds)
	set(&o.Rounds, *rounds)
	o.LatencyMax = *latMax
	o.LatencyLinger = *latLinger
	if *partitions > 0 {
		o.Partitions = int32(*partitions)
	}
	o.BrokerCompaction = *brokerCompaction
	if *latDuration > 0 {
		o.LatencyDuration = *latDuration
	}
	if *latFractions != "" {
		for _, f := range strings.Split(*latFractions, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || v <= 0 {
				fmt.Fprintf(os.Stderr, "kcqrs-bench: --latency-fractions: %q is not a positive number\n", f)
				os.Exit(2)
			}
			o.LatencyFractions = append(o.LatencyFractions, v)
		}
	}
	if *skip != "" {
		o.Skip = strings.Split(*skip, ",")
	}
	o.PersonalOnly, o.PersonalPairs, o.PersonalCPUProfile = *personalOnly, *personalPairs, *personalProfile
	if *verbose {
		o.LogOut = os.Stderr
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		o.CPUProfile = f
	}
	if *latProfile != "" {
		f, err := os.Create(*latProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		o.LatencyCPUProfile = f
	}
	if *projProfile != "" {
		f, err := os.Create(*projProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		o.ProjectorCPUProfile = f
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	res, err := bench.Run(ctx, o, os.Stderr)
	if err != nil {
		return err
	}
	if err := res.WriteTable(os.Stdout); err != nil {
		return err
	}
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		return res.WriteTable(f)
	}
	return nil
}
