// Command processor runs one kcqrs command-processing worker: it joins the
// consumer group on the command topic and handles the partitions it is
// given, exactly once, for the example aggregates (account, folder). With
// --transfers (the default) it also runs the transfer saga (package saga).
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
	"github.com/kcqrs/kcqrs/saga"
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
	transfers := flag.Bool("transfers", true, "also run the transfer saga (group kcqrs-transfers, reply topic transfer-replies)")
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sagaDone := make(chan error, 1)
	if *transfers {
		s, err := saga.New(saga.Config{Brokers: cfg.Brokers, InstanceID: cfg.InstanceID, Events: cfg.Topics.Events, Commands: cfg.Topics.Commands, Logger: cfg.Logger, ClientOpts: cfg.ClientOpts}, reg)
		if err != nil {
			fatal(err)
		}
		go func() { sagaDone <- s.Run(ctx) }()
	} else {
		close(sagaDone)
	}
	if err := p.Run(ctx); err != nil {
		fatal(err)
	}
	if err := <-sagaDone; err != nil {
		fatal(fmt.Errorf("transfer saga: %w", err))
	}
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
