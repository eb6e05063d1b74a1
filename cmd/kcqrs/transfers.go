package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/saga"
)

// runTransfers lists the transfers not ended yet (from the events topic),
// or, with "resume", tells a saga group that lost its offsets where to go on.
func runTransfers(args []string) (rerr error) {
	defer func() { rerr = withGrants("transfers", rerr) }()
	if len(args) > 0 && args[0] == "resume" {
		return runTransfersResume(args[1:])
	}
	// The connection settings of every subcommand (TLS, SASL, KCQRS_*).
	c := newCLI("transfers", "usage: kcqrs transfers [flags]            list pending transfers (debited, not completed or refunded)\n"+
		"       kcqrs transfers resume [flags]     set the saga group's offsets after they were lost")
	var events string
	var olderThan, timeout time.Duration
	var jsonOut bool
	c.String(&events, "events-topic", "events", "the processor's events topic")
	c.Duration(&olderThan, "older-than", 0, "list only transfers debited longer ago than this")
	c.Bool(&jsonOut, "json", false, "print JSON lines instead of a table")
	c.Duration(&timeout, "timeout", time.Minute, "how long reading the events topic may take")
	if err := c.parse(args); err != nil {
		return err
	}
	olderThanP, asJSON := &olderThan, &jsonOut
	reg, err := examples.Registry()
	if err != nil {
		return err
	}
	opts, err := c.clientOpts()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	list, err := saga.ListPending(ctx, c.kafka.Brokers, opts, events, reg)
	if err != nil {
		return err
	}
	now := time.Now()
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	if !*asJSON {
		fmt.Fprintln(w, "SOURCE\tSEQ\tTRANSFER\tTARGET\tAMOUNT\tSTATE\tAGE")
	}
	n := 0
	for _, p := range list {
		age := now.Sub(p.Debited)
		if age < *olderThanP {
			continue
		}
		n++
		if *asJSON {
			b, _ := json.Marshal(p)
			fmt.Println(string(b))
			continue
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\t%s\t%s\n", p.Source, p.Seq, p.TransferID, p.Target, p.Amount, p.State, age.Round(time.Second))
	}
	if !*asJSON {
		_ = w.Flush()
		fmt.Printf("%d pending transfer(s)\n", n)
	}
	return nil
}

func runTransfersResume(args []string) error {
	// The connection settings of every subcommand (TLS, SASL, KCQRS_*).
	c := newCLI("transfers resume", "usage: kcqrs transfers resume --at <start|end|RFC 3339 time> [flags]\n\nSets the saga group's offsets after they were lost.")
	var groupV, eventsV, atV string
	var allV, forwardV, dryRunV bool
	c.String(&groupV, "group", "kcqrs-transfers", "the saga's consumer group")
	c.String(&eventsV, "events-topic", "events", "the processor's events topic")
	c.String(&atV, "at", "", "where to resume: start (replays every transfer event: safe, moves no money, takes time), end, or an RFC 3339 time")
	c.Bool(&allV, "all", false, "move every partition, not only those without an offset (never forward past a committed offset without --forward)")
	c.Bool(&forwardV, "forward", false, "with --all, allow moving a partition forward (skipped transfers stay pending)")
	c.Bool(&dryRunV, "dry-run", false, "print the offsets and change nothing")
	if err := c.parse(args); err != nil {
		return err
	}
	group, events, at, all, forward, dryRun := &groupV, &eventsV, &atV, &allV, &forwardV, &dryRunV
	if *at == "" {
		return c.usageError(errors.New("transfers resume: --at is required"))
	}
	opts, err := c.clientOpts()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	offsets, err := saga.Resume(ctx, saga.ResumeOptions{
		Brokers: c.kafka.Brokers, ClientOpts: opts, Group: *group, Events: *events,
		At: *at, All: *all, Forward: *forward, DryRun: *dryRun,
	})
	if err != nil {
		return err
	}
	verb := "committed"
	if *dryRun {
		verb = "would commit"
	}
	if len(offsets) == 0 {
		fmt.Printf("group %s has an offset on every partition of %s: nothing to do (use --all to move them)\n", *group, *events)
		return nil
	}
	fmt.Printf("group %s: %s %s offsets %s\n", *group, verb, *events, saga.FormatOffsets(offsets))
	return nil
}
