// Command chaos runs the crash test of the processor (package
// internal/chaos): an embedded broker, processor processes killed and
// restarted at random, broker faults, and a full exactly-once check at the
// end. It prints a one-line summary and exits non-zero on any violation.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/kcqrs/kcqrs/internal/chaos"
)

func main() {
	var o chaos.Options
	flag.Uint64Var(&o.Seed, "seed", 1, "seed of every random choice; the same seed replays the same schedule")
	flag.IntVar(&o.Kills, "kills", 20, "SIGKILLs to perform")
	flag.IntVar(&o.Workers, "workers", 3, "processor processes")
	partitions := flag.Int("partitions", 6, "partitions of the topics")
	flag.IntVar(&o.Accounts, "accounts", 24, "accounts in the workload")
	flag.IntVar(&o.Clients, "clients", 8, "concurrent clients")
	flag.IntVar(&o.ClientRate, "client-rate", 5, "commands per second per client at most")
	flag.IntVar(&o.DedupeWindow, "dedupe-window", 256, "workers' --dedupe-window (must cover the clients' retry horizon)")
	flag.IntVar(&o.TransferPercent, "transfer-percent", 25, "share of the clients' operations that are transfers (negative: none)")
	flag.BoolVar(&o.NoFaults, "no-faults", false, "do not inject broker faults")
	flag.DurationVar(&o.SessionTimeout, "session-timeout", 0, "workers' group session timeout (default 6s; crashloop: the processor's)")
	flag.DurationVar(&o.TransactionTimeout, "transaction-timeout", 0, "workers' transaction timeout (default 10s; crashloop: the processor's)")
	flag.StringVar(&o.Membership, "membership", "", "workers' group membership: static, dynamic, or empty for the processor's default")
	flag.DurationVar(&o.RebalanceTimeout, "rebalance-timeout", 0, "workers' rebalance timeout (default: 2 x session timeout; crashloop: the processor's)")
	flag.StringVar(&o.GroupProtocol, "group-protocol", "", "workers' --group-protocol (classic or consumer); empty for the processor's default")
	flag.DurationVar(&o.GroupSessionTimeout, "group-session-timeout", 0, "with -group-protocol consumer: the groups' consumer.session.timeout.ms (the broker's 45s by default)")
	flag.StringVar(&o.Mode, "mode", "kills", "kills: the exactly-once crash test; crashloop: a SIGKILL every 5-10 s, the workers' default timeouts, and the longest time without progress")
	flag.BoolVar(&o.Hostile, "hostile", false, "interleave hostile commands (forged reply topics, huge and compressed commands, amplifying rejections) and check the internal topics hold only the topology's records")
	flag.BoolVar(&o.NoSagaReplays, "no-saga-replays", false, "do not replay the saga (by default, from time to time, a saga in a new group replays the events from their start for a few seconds)")
	flag.IntVar(&o.Standbys, "standbys", 1, "warm standbys per partition")
	flag.IntVar(&o.Erasures, "erasures", 0, "run the workers with a master key and erase this many accounts of their own during the workload; the check reads everything with the keys (docs/erasure.md)")
	flag.StringVar(&o.Dir, "dir", "", "working directory (kept); default a temporary one, removed after a passing run")
	flag.StringVar(&o.ProcessorBin, "processor", "", "processor binary (default: go build ./cmd/processor)")
	quiet := flag.Bool("quiet", false, "print only the summary")
	flag.Parse()
	o.Partitions = int32(*partitions)
	o.Log = os.Stderr
	if *quiet {
		o.Log = io.Discard
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := chaos.Run(ctx, o)
	fmt.Println(sum)
	for i, v := range sum.Violations {
		if i == 20 {
			fmt.Printf("... and %d more\n", len(sum.Violations)-i)
			break
		}
		fmt.Println("violation:", v)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}
