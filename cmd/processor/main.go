// Command processor runs one kcqrs command-processing worker: it joins the
// consumer group on the command topic and handles the partitions it is
// given, exactly once, for the example aggregates (account, folder).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
)

func main() {
	var cfg topology.Config
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	flag.StringVar(&cfg.InstanceID, "instance-id", hostname(), "stable id of this worker (its transactional id is <group>-<instance-id>)")
	flag.StringVar(&cfg.StateDir, "state-dir", ".kcqrs/state", "directory of the Pebble stores")
	flag.StringVar(&cfg.Group, "group", "kcqrs-processor", "consumer group")
	partitions := flag.Int("partitions", 8, "partition count for topics created at start")
	flag.DurationVar(&cfg.CommitInterval, "commit-interval", 0, "longest time a transaction stays open while commands wait (default 100ms)")
	flag.IntVar(&cfg.MaxBatch, "max-batch", 0, "most commands per transaction (default 1000)")
	flag.IntVar(&cfg.DedupeWindow, "dedupe-window", 0, "command ids remembered per aggregate (default 32)")
	flag.StringVar(&cfg.Topics.Commands, "commands-topic", "", "command topic (default commands)")
	flag.StringVar(&cfg.Topics.Events, "events-topic", "", "events topic (default events)")
	flag.StringVar(&cfg.Topics.Changelog, "changelog-topic", "", "snapshot changelog topic (default snapshots-changelog)")
	flag.StringVar(&cfg.Topics.Replies, "reply-topic", "", "default reply topic (default command_reply)")
	flag.StringVar(&cfg.Topics.DeadLetters, "dlq-topic", "", "dead-letter topic (default commands-dlq)")
	flag.DurationVar(&cfg.TransactionTimeout, "transaction-timeout", 0, "broker-side timeout of an open transaction (default 10s)")
	flag.DurationVar(&cfg.SessionTimeout, "session-timeout", 0, "group session timeout: how long a crashed worker keeps its partitions; below --transaction-timeout (default 8s)")
	flag.DurationVar(&cfg.RebalanceTimeout, "rebalance-timeout", 0, "how long a rebalance waits for every member to rejoin (default 30s)")
	flag.BoolVar(&cfg.StaticMembership, "static", false, "static group membership with the instance id: a restarted worker gets its partitions back without a rebalance")
	flag.IntVar(&cfg.Standbys, "standbys", 0, "warm standby copies of each partition's store kept by other workers")
	flag.DurationVar(&cfg.StandbyInterval, "standby-interval", 0, "how often standby and not-yet-used stores catch up (default 1s)")
	flag.DurationVar(&cfg.HangingTxnThreshold, "hanging-txn-threshold", 0, "report a command partition blocked by an open transaction this long (default 2m, negative: off)")
	flag.Parse()
	cfg.Brokers = strings.Split(*brokers, ",")
	cfg.Partitions = int32(*partitions)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))

	reg, err := examples.Registry()
	if err != nil {
		fatal(err)
	}
	p, err := topology.New(cfg, reg)
	if err != nil {
		fatal(err)
	}
	// SIGTERM (or Ctrl-C) cancels ctx: Run stops fetching, commits or
	// aborts the open transaction, closes the stores and leaves the group,
	// so that a restart restores nothing and the partitions move at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := p.Run(ctx); err != nil {
		fatal(err)
	}
	cfg.Logger.Info("processor stopped cleanly")
}

func hostname() string {
	h, _ := os.Hostname()
	if h == "" {
		return "worker-0"
	}
	return h
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "processor:", err)
	os.Exit(1)
}
