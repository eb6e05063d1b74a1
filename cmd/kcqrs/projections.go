package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/projection"
)

// This file holds the replay tooling: groups (lag), reset and rebuild.

func adminClient(brokers string) (*kgo.Client, *kadm.Client, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		return nil, nil, err
	}
	return cl, kadm.NewClient(cl), nil
}

// runGroups lists consumer groups with their lag per partition.
func runGroups(args []string) error {
	fs := flag.NewFlagSet("groups", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	prefix := fs.String("prefix", "", "only groups whose name starts with this")
	_ = fs.Parse(args)
	cl, adm, err := adminClient(*brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("list groups: %w", err)
	}
	var groups []string
	for _, g := range listed.Groups() {
		if strings.HasPrefix(g, *prefix) {
			groups = append(groups, g)
		}
	}
	sort.Strings(groups)
	if len(groups) == 0 {
		fmt.Println("no consumer groups")
		return nil
	}
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		return fmt.Errorf("lag: %w", err)
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSTATE\tMEMBERS\tTOPIC\tPARTITION\tCOMMITTED\tEND\tLAG")
	for _, g := range groups {
		l := lags[g]
		if err := l.Error(); err != nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\terror: %v\n", g, l.State, err)
			continue
		}
		rows := l.Lag.Sorted()
		if len(rows) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t-\t-\t-\t-\t-\n", g, l.State, len(l.Members))
		}
		for _, r := range rows {
			commit := fmt.Sprint(r.Commit.At)
			if r.Commit.At < 0 {
				commit = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%d\t%d\n", g, l.State, len(l.Members), r.Topic, r.Partition, commit, r.End.Offset, r.Lag)
		}
	}
	tw.Flush()
	fmt.Println("\n(on the transactional events topic a group that read everything still lags by its trailing commit markers, usually 1 per partition)")
	return nil
}

// runReset plans (and with --execute carries out) the reset of one version
// of the read models.
func runReset(args []string) error {
	fs := flag.NewFlagSet("reset", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	var cfg projection.Config
	fs.StringVar(&cfg.Names.Prefix, "prefix", "kcqrs-proj", "prefix of the read models' groups and topics")
	fs.IntVar(&cfg.Names.Version, "version", 1, "version of the read models to reset")
	fs.StringVar(&cfg.EventsTopic, "events-topic", "events", "events topic")
	fs.StringVar(&cfg.StateDir, "state-dir", ".kcqrs/projector", "the projector's state directory, whose stores of these tables are removed")
	to := fs.String("to", "", "where to: earliest, latest, timestamp=<RFC 3339 or unix ms>, offset=<n> (required)")
	fs.Bool("dry-run", true, "show the plan only (the default)")
	execute := fs.Bool("execute", false, "carry out the plan")
	allowIncomplete := fs.Bool("allow-incomplete", false, "carry out a reset to latest, a timestamp or an offset, "+
		"whose read models lack every account's history before that point (accounts without owner or currency, left out of owners and totals)")
	_ = fs.Parse(args)
	cfg.Brokers = strings.Split(*brokers, ",")
	if *to == "" {
		return errors.New("reset: --to is required (earliest, latest, timestamp=..., offset=...)")
	}
	target, err := projection.ParseResetTarget(*to)
	if err != nil {
		return err
	}
	cl, adm, err := adminClient(*brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	plan, err := projection.PlanReset(ctx, adm, cfg, target)
	if errors.Is(err, projection.ErrNoSuchVersion) {
		fmt.Printf("nothing to reset: read models %s v%d never existed (no group offsets, no tables)\n", cfg.Names.Prefix, cfg.Names.Version)
		return err
	}
	if err != nil {
		return err
	}
	plan.AllowIncomplete = *allowIncomplete
	fmt.Print(plan)
	if lacks := plan.Incomplete(); lacks != "" {
		fmt.Printf("\nWARNING: %s.\n", lacks)
		if !*allowIncomplete {
			fmt.Println("--execute refuses this without --allow-incomplete.")
		}
	}
	refused := projection.CheckNotLive(ctx, adm, cfg.Names)
	if refused == nil {
		refused = projection.CheckNoInstances(ctx, cfg)
	}
	if refused != nil {
		fmt.Printf("\nREFUSED: %v\n", refused)
		if *execute {
			return refused
		}
	}
	if !*execute {
		fmt.Println("\ndry run: nothing changed. Stop the projectors and query servers of this version, then add --execute.")
		return nil
	}
	if err := projection.ExecuteReset(ctx, adm, plan); err != nil {
		return err
	}
	fmt.Println("\ndone. Start the projector again: it rebuilds the read models from the new offsets.")
	return nil
}

// runRebuild follows a new version of the read models (started with
// `projector --version N`) until it has caught up, with a progress bar.
func runRebuild(args []string) error {
	fs := flag.NewFlagSet("rebuild", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	var n projection.Names
	fs.StringVar(&n.Prefix, "prefix", "kcqrs-proj", "prefix of the read models' groups and topics")
	fs.IntVar(&n.Version, "version", 0, "the new version being built (required)")
	topic := fs.String("events-topic", "events", "events topic")
	interval := fs.Duration("interval", 500*time.Millisecond, "how often to check")
	_ = fs.Parse(args)
	if n.Version <= 0 {
		return errors.New("rebuild: --version (the new version) is required")
	}
	cl, adm, err := adminClient(*brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("waiting for read models v%d (groups %v) to catch up\n", n.Version, n.Groups())
	var lastErr string
	for {
		ok, pr, err := projection.CaughtUp(ctx, cl, adm, n, *topic)
		switch {
		case err != nil && ctx.Err() == nil:
			// Typically: its topics do not exist until its projector starts.
			if err.Error() != lastErr {
				fmt.Printf("\rnot started yet? (%v); start it with: projector --version %d --serve-versions <old>,%d\n", err, n.Version, n.Version)
				lastErr = err.Error()
			}
		case err == nil:
			lastErr = ""
			fmt.Printf("\r%s", rebuildBar(ok, pr))
		}
		if ok {
			fmt.Printf("\nv%d has caught up: a query server run with --serve-versions <old>,%d now answers from it.\n", n.Version, n.Version)
			return nil
		}
		select {
		case <-ctx.Done():
			fmt.Println()
			return ctx.Err()
		case <-time.After(*interval):
		}
	}
}

// rebuildBar is the progress of a rebuild. Caught up, it is full: the
// groups' positions stay behind the end offsets by the commit markers after
// their last records (see projection.PartitionProgress.Lag), which no
// consumer ever reads.
func rebuildBar(caughtUp bool, pr projection.Progress) string {
	if caughtUp {
		return progressBar(pr.Total, pr.Total, 40)
	}
	return progressBar(pr.Done, pr.Total, 40)
}

// progressBar renders done of total as [####....] 42% done/total.
func progressBar(done, total int64, width int) string {
	frac := 1.0
	if total > 0 {
		frac = min(1, float64(done)/float64(total))
	}
	fill := int(frac * float64(width))
	return fmt.Sprintf("[%s%s] %3d%% %d/%d records", strings.Repeat("#", fill), strings.Repeat(".", width-fill), int(frac*100), done, total)
}
