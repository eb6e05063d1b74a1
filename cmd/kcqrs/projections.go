package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kcqrs/kcqrs/projection"
)

// This file holds the replay tooling: groups (lag), reset and rebuild.

// runGroups lists consumer groups with their lag per partition.
func runGroups(args []string) (rerr error) {
	defer func() { rerr = withGrants("groups", rerr) }()
	fs := newCLI("groups", "usage: kcqrs groups [flags]\n\nLists consumer groups with their lag per partition.")
	prefix := new(string)
	fs.String(prefix, "prefix", "", "only groups whose name starts with this")
	if err := fs.parse(args); err != nil {
		return err
	}
	cl, adm, err := fs.admin()
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
func runReset(args []string) (rerr error) {
	defer func() { rerr = withGrants("reset", rerr) }()
	fs := newCLI("reset", "usage: kcqrs reset --to <where> [--execute] [flags]\n\nResets a version of the read models: shows the plan, and with --execute carries it out.")
	var cfg projection.Config
	fs.String(&cfg.Names.Prefix, "prefix", "kcqrs-proj", "prefix of the read models' groups and topics")
	fs.Int(&cfg.Names.Version, "version", 1, "version of the read models to reset")
	fs.String(&cfg.EventsTopic, "events-topic", "events", "events topic")
	fs.String(&cfg.StateDir, "state-dir", ".kcqrs/projector", "the projector's state directory, whose stores of these tables are removed")
	fs.FlagsOnly()
	to, execute := new(string), new(bool)
	fs.String(to, "to", "", "where to: earliest, latest, timestamp=<RFC 3339 or unix ms>, offset=<n> (required)")
	fs.Bool(new(bool), "dry-run", true, "show the plan only (the default)")
	fs.Bool(execute, "execute", false, "carry out the plan")
	allowIncomplete := new(bool)
	fs.Bool(allowIncomplete, "allow-incomplete", false, "carry out a reset to latest, a timestamp or an offset, "+
		"whose read models lack every account's history before that point (accounts without owner or currency, left out of owners and totals)")
	if err := fs.parse(args); err != nil {
		return err
	}
	// The reset's own clients (registry, lock) take the same connection.
	opts, err := fs.clientOpts()
	if err != nil {
		return err
	}
	cfg.Brokers, cfg.ClientOpts = fs.kafka.Brokers, opts
	if *to == "" {
		return errors.New("reset: --to is required (earliest, latest, timestamp=..., offset=...)")
	}
	target, err := projection.ParseResetTarget(*to)
	if err != nil {
		return err
	}
	cl, adm, err := fs.admin()
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
func runRebuild(args []string) (rerr error) {
	defer func() { rerr = withGrants("rebuild", rerr) }()
	fs := newCLI("rebuild", "usage: kcqrs rebuild --version <new> [flags]\n\nFollows a new version of the read models until it has caught up.")
	var n projection.Names
	fs.String(&n.Prefix, "prefix", "kcqrs-proj", "prefix of the read models' groups and topics")
	topic, interval := new(string), new(time.Duration)
	fs.String(topic, "events-topic", "events", "events topic")
	fs.FlagsOnly()
	fs.Int(&n.Version, "version", 0, "the new version being built (required)")
	fs.Duration(interval, "interval", 500*time.Millisecond, "how often to check")
	if err := fs.parse(args); err != nil {
		return err
	}
	if n.Version <= 0 {
		return errors.New("rebuild: --version (the new version) is required")
	}
	cl, adm, err := fs.admin()
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
		case err != nil && ctx.Err() == nil && authKind(err) >= 0:
			// Waiting cannot help: the grant is missing.
			return fmt.Errorf("rebuild: %w", err)
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
