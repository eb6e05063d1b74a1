package projection

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ResetKind is where a reset moves a group's offsets.
type ResetKind int

// The choices of Kafka's kafka-consumer-groups --reset-offsets.
const (
	ResetEarliest ResetKind = iota
	ResetLatest
	ResetTimestamp
	ResetOffset
)

// ResetTarget is where a reset moves the accounts group on the events topic.
type ResetTarget struct {
	Kind ResetKind
	// Millis is the timestamp of ResetTimestamp: the first offset at or
	// after it (the end where there is none).
	Millis int64
	// Offset of ResetOffset, applied to every partition and clamped into
	// [start, end] of each.
	Offset int64
}

func (t ResetTarget) String() string {
	switch t.Kind {
	case ResetLatest:
		return "latest"
	case ResetTimestamp:
		return "timestamp=" + time.UnixMilli(t.Millis).UTC().Format(time.RFC3339Nano)
	case ResetOffset:
		return "offset=" + strconv.FormatInt(t.Offset, 10)
	}
	return "earliest"
}

// ParseResetTarget parses earliest, latest, timestamp=<RFC 3339 or unix
// milliseconds> or offset=<n>.
func ParseResetTarget(s string) (ResetTarget, error) {
	k, v, _ := strings.Cut(s, "=")
	switch k {
	case "earliest":
		return ResetTarget{Kind: ResetEarliest}, nil
	case "latest":
		return ResetTarget{Kind: ResetLatest}, nil
	case "timestamp":
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			return ResetTarget{Kind: ResetTimestamp, Millis: ms}, nil
		}
		ts, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return ResetTarget{}, fmt.Errorf("projection: reset target %q: timestamp must be RFC 3339 or unix milliseconds", s)
		}
		return ResetTarget{Kind: ResetTimestamp, Millis: ts.UnixMilli()}, nil
	case "offset":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return ResetTarget{}, fmt.Errorf("projection: reset target %q: offset must be a non-negative integer", s)
		}
		return ResetTarget{Kind: ResetOffset, Offset: n}, nil
	}
	return ResetTarget{}, fmt.Errorf("projection: reset target %q: want earliest, latest, timestamp=<time> or offset=<n>", s)
}

// LiveGroupError refuses a reset while a group has live members: their
// commits would overwrite the reset, and their tables would go on.
type LiveGroupError struct {
	Group   string
	Members int
}

func (e *LiveGroupError) Error() string {
	return fmt.Sprintf("projection: group %s has %d live member(s): stop its projectors first", e.Group, e.Members)
}

// PartitionReset is one partition's move.
type PartitionReset struct {
	Partition int32
	// Current is the committed offset (-1: none), Target the new one.
	Current, Target int64
}

// ResetPlan is everything a reset of one version of the read models does.
// It is computed without changing anything (a dry run prints it).
type ResetPlan struct {
	Names       Names
	EventsTopic string
	Target      ResetTarget
	// Accounts are the accounts group's moves on the events topic.
	Accounts []PartitionReset
	// DropOffsets are the downstream groups: their committed offsets are
	// deleted, since their input topics are recreated empty.
	DropOffsets []string
	// DeleteTopics are the tables and intermediate topics; the projector
	// recreates them (empty) when it starts.
	DeleteTopics []string
	// WipeDirs are the local stores of those tables (processor and views).
	WipeDirs []string
	// AllowIncomplete must be set to carry out a reset to anything but
	// earliest: see Incomplete.
	AllowIncomplete bool

	cfg Config // brokers and client options for the reset lock
}

// Incomplete says what the read models will lack after the reset ("" for a
// reset to earliest, which rebuilds them in full).
func (p ResetPlan) Incomplete() string {
	if p.Target.Kind == ResetEarliest {
		return ""
	}
	return fmt.Sprintf("a reset to %s folds only the events after that point into empty read models: accounts with no "+
		"later event are missing, and accounts opened before it have no owner or currency, so they are left out of the "+
		"owner listings and the totals, and their balances start at the first later event", p.Target)
}

// IncompleteResetError refuses a reset to latest, a timestamp or an offset
// whose plan does not have AllowIncomplete set.
type IncompleteResetError struct{ Lacks string }

func (e *IncompleteResetError) Error() string {
	return "projection: refused without the explicit allowance: " + e.Lacks
}

// ErrNoSuchVersion: the read models of that version never existed (no group
// offsets, no tables): there is nothing to reset.
var ErrNoSuchVersion = errors.New("projection: no such version of the read models")

// String is the plan as a human reads it before --execute.
func (p ResetPlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "reset of read models %s v%d to %s\n\n", p.Names.Prefix, p.Names.Version, p.Target)
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tTOPIC\tPARTITION\tCURRENT\tNEW")
	for _, r := range p.Accounts {
		cur := strconv.FormatInt(r.Current, 10)
		if r.Current < 0 {
			cur = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\n", p.Names.AccountsGroup(), p.EventsTopic, r.Partition, cur, r.Target)
	}
	tw.Flush()
	for _, g := range p.DropOffsets {
		fmt.Fprintf(&b, "delete committed offsets of group %s (its input is recreated empty)\n", g)
	}
	for _, t := range p.DeleteTopics {
		fmt.Fprintf(&b, "delete topic %s (recreated empty by the projector)\n", t)
	}
	for _, d := range p.WipeDirs {
		fmt.Fprintf(&b, "remove local state %s\n", d)
	}
	return b.String()
}

// PlanReset computes the reset of cfg.Names' read models; it changes nothing.
func PlanReset(ctx context.Context, adm *kadm.Client, cfg Config, target ResetTarget) (ResetPlan, error) {
	cfg.setDefaults()
	n := cfg.Names
	plan := ResetPlan{Names: n, EventsTopic: cfg.EventsTopic, Target: target, cfg: cfg}
	if err := checkExists(ctx, adm, n); err != nil {
		return plan, err
	}
	cur, err := GroupProgress(ctx, adm, string(n.AccountsGroup()), cfg.EventsTopic)
	if err != nil {
		return plan, err
	}
	var at kadm.ListedOffsets
	if target.Kind == ResetTimestamp {
		if at, err = adm.ListOffsetsAfterMilli(ctx, target.Millis, cfg.EventsTopic); err == nil {
			err = at.Error()
		}
		if err != nil {
			return plan, fmt.Errorf("projection: offsets after %s: %w", target, err)
		}
	}
	for _, p := range cur {
		r := PartitionReset{Partition: p.Partition, Current: p.Committed}
		switch target.Kind {
		case ResetEarliest:
			r.Target = p.Start
		case ResetLatest:
			r.Target = p.End
		case ResetTimestamp:
			r.Target = p.End
			if o, ok := at.Lookup(cfg.EventsTopic, p.Partition); ok && o.Offset >= 0 {
				r.Target = min(max(o.Offset, p.Start), p.End)
			}
		case ResetOffset:
			r.Target = min(max(target.Offset, p.Start), p.End)
		}
		plan.Accounts = append(plan.Accounts, r)
	}
	plan.DropOffsets = []string{string(n.OwnersGroup()), string(n.TotalsGroup())}
	plan.DeleteTopics = append(n.Tables(), n.Intermediate()...)
	if cfg.StateDir != "" {
		for _, t := range n.Tables() {
			for _, sub := range []string{"processor", "views"} {
				m, _ := filepath.Glob(filepath.Join(cfg.StateDir, sub, t+".*"))
				plan.WipeDirs = append(plan.WipeDirs, m...)
			}
		}
		sort.Strings(plan.WipeDirs)
	}
	return plan, nil
}

// checkExists returns ErrNoSuchVersion unless one of the version's groups
// has committed offsets or one of its tables exists.
func checkExists(ctx context.Context, adm *kadm.Client, n Names) error {
	td, err := adm.ListTopics(ctx, n.Tables()...)
	if err != nil {
		return fmt.Errorf("projection: list topics: %w", err)
	}
	for _, t := range n.Tables() {
		if d, ok := td[t]; ok && d.Err == nil {
			return nil
		}
	}
	for _, g := range n.Groups() {
		offs, err := adm.FetchOffsets(ctx, string(g))
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			return fmt.Errorf("projection: offsets of group %s: %w", g, err)
		}
		if err == nil && len(offs) > 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: %s v%d has no group offsets and no tables (check --prefix and --version)", ErrNoSuchVersion, n.Prefix, n.Version)
}

// CheckNotLive returns a *LiveGroupError for the first group of the version
// with live members.
func CheckNotLive(ctx context.Context, adm *kadm.Client, n Names) error {
	var groups []string
	for _, g := range n.Groups() {
		groups = append(groups, string(g))
	}
	described, err := adm.DescribeGroups(ctx, groups...)
	if err != nil {
		return fmt.Errorf("projection: describe groups: %w", err)
	}
	for _, g := range groups {
		d, ok := described[g]
		if !ok {
			continue
		}
		if d.Err != nil && !errors.Is(d.Err, kerr.GroupIDNotFound) {
			return fmt.Errorf("projection: describe group %s: %w", g, d.Err)
		}
		if len(d.Members) > 0 {
			return &LiveGroupError{Group: g, Members: len(d.Members)}
		}
	}
	return nil
}

// ExecuteReset carries out a plan. It refuses a partial reset without
// plan.AllowIncomplete (*IncompleteResetError). It takes the version's
// reset lock (LockForReset: refused while a projector or query server of the
// version is registered, and any that starts meanwhile waits for it), and
// refuses while any group of the version has live members; then it moves the accounts group, drops the downstream
// groups' offsets, deletes the tables and intermediate topics and removes
// the local stores, so nothing of the old read model survives. Stop the
// version's projectors and query servers first; start them afterwards and
// they rebuild from the new offsets.
func ExecuteReset(ctx context.Context, adm *kadm.Client, plan ResetPlan) (err error) {
	n := plan.Names
	if lacks := plan.Incomplete(); lacks != "" && !plan.AllowIncomplete {
		return &IncompleteResetError{Lacks: lacks}
	}
	if len(plan.cfg.Brokers) == 0 {
		return errors.New("projection: reset: the plan has no brokers (make it with PlanReset)")
	}
	lock, err := LockForReset(ctx, plan.cfg, 2*time.Minute)
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if rerr := lock.Release(rctx); err == nil && rerr != nil {
			err = fmt.Errorf("projection: release the reset lock: %w", rerr)
		}
	}()
	if err := CheckNotLive(ctx, adm, n); err != nil {
		return err
	}
	offs := kadm.Offsets{}
	for _, r := range plan.Accounts {
		offs.AddOffset(plan.EventsTopic, r.Partition, r.Target, -1)
	}
	if len(offs) > 0 {
		resp, err := adm.CommitOffsets(ctx, string(n.AccountsGroup()), offs)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return fmt.Errorf("projection: commit reset offsets of %s: %w", n.AccountsGroup(), err)
		}
	}
	if len(plan.DropOffsets) > 0 {
		resp, err := adm.DeleteGroups(ctx, plan.DropOffsets...)
		if err != nil {
			return fmt.Errorf("projection: delete groups: %w", err)
		}
		for g, r := range resp {
			if r.Err != nil && !errors.Is(r.Err, kerr.GroupIDNotFound) {
				return fmt.Errorf("projection: delete group %s: %w", g, r.Err)
			}
		}
	}
	if len(plan.DeleteTopics) > 0 {
		resp, err := adm.DeleteTopics(ctx, plan.DeleteTopics...)
		if err != nil {
			return fmt.Errorf("projection: delete topics: %w", err)
		}
		for t, r := range resp {
			if r.Err != nil && !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
				return fmt.Errorf("projection: delete topic %s: %w", t, r.Err)
			}
		}
	}
	for _, d := range plan.WipeDirs {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("projection: remove local state: %w", err)
		}
	}
	return nil
}

// TableOf returns the table topic of a group (goka's naming: <group>-table).
func TableOf(g goka.Group) string { return string(goka.GroupTable(g)) }
