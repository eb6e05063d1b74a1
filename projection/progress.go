package projection

import (
	"context"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kadm"
)

// PartitionProgress is where a group stands on one partition of its input.
type PartitionProgress struct {
	Partition int32
	// Start and End are the partition's log start and end offsets.
	Start, End int64
	// Committed is the group's committed offset, -1 if it has none.
	Committed int64
}

// Position is the offset the group reads next (its commit, or the start).
func (p PartitionProgress) Position() int64 { return max(p.Committed, p.Start) }

// Lag is End minus Position. On a transactional topic (the events topic) a
// group that read everything still lags by the trailing commit markers (one
// per partition, usually): goka (sarama) commits the offset after its last
// record, never past a marker. Use CaughtUp to compare versions.
func (p PartitionProgress) Lag() int64 { return max(0, p.End-p.Position()) }

// GroupProgress reads a group's committed offsets on topic and the topic's
// start and end offsets, by partition.
func GroupProgress(ctx context.Context, adm *kadm.Client, group, topic string) ([]PartitionProgress, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("projection: start offsets of %s: %w", topic, err)
	}
	if err := starts.Error(); err != nil {
		return nil, fmt.Errorf("projection: start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("projection: end offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("projection: end offsets of %s: %w", topic, err)
	}
	commits, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("projection: offsets of group %s: %w", group, err)
	}
	var out []PartitionProgress
	for p, s := range starts[topic] {
		pp := PartitionProgress{Partition: p, Start: s.Offset, End: ends[topic][p].Offset, Committed: -1}
		if c, ok := commits.Lookup(topic, p); ok && c.Err == nil && c.At >= 0 {
			pp.Committed = c.At
		}
		out = append(out, pp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out, nil
}

// Progress is how far one version of the read models has come.
type Progress struct {
	// Done and Total sum the positions (minus starts) and ends (minus starts)
	// of all three groups over all partitions of their inputs.
	Done, Total int64
	// Groups has each group's progress on its input topic.
	Groups map[string][]PartitionProgress
}

// VersionProgress reads the progress of every group of a version.
func VersionProgress(ctx context.Context, adm *kadm.Client, n Names, eventsTopic string) (Progress, error) {
	pr := Progress{Groups: map[string][]PartitionProgress{}}
	inputs := map[string]string{
		string(n.AccountsGroup()): eventsTopic,
		string(n.OwnersGroup()):   string(n.ByOwnerTopic()),
		string(n.TotalsGroup()):   string(n.ByCurrencyTopic()),
	}
	for g, topic := range inputs {
		ps, err := GroupProgress(ctx, adm, g, topic)
		if err != nil {
			return pr, err
		}
		pr.Groups[g] = ps
		for _, p := range ps {
			pr.Done += p.Position() - p.Start
			pr.Total += p.End - p.Start
		}
	}
	return pr, nil
}

// CaughtUp reports whether version next has read at least as far as
// version prev on the events topic, and its downstream groups (owners,
// totals) have read all of their inputs. Comparing with prev's commits
// rather than the end offsets sidesteps the commit markers (see Lag): both
// versions commit the same way. A prev without commits (never ran) counts
// as at its start.
func CaughtUp(ctx context.Context, adm *kadm.Client, next, prev Names, eventsTopic string) (bool, Progress, error) {
	pr, err := VersionProgress(ctx, adm, next, eventsTopic)
	if err != nil {
		return false, pr, err
	}
	ref, err := GroupProgress(ctx, adm, string(prev.AccountsGroup()), eventsTopic)
	if err != nil {
		return false, pr, err
	}
	refAt := map[int32]int64{}
	for _, p := range ref {
		refAt[p.Partition] = p.Position()
	}
	for _, p := range pr.Groups[string(next.AccountsGroup())] {
		if p.Position() < refAt[p.Partition] {
			return false, pr, nil
		}
	}
	for _, g := range []string{string(next.OwnersGroup()), string(next.TotalsGroup())} {
		for _, p := range pr.Groups[g] {
			if p.Lag() > 0 {
				return false, pr, nil
			}
		}
	}
	return true, pr, nil
}
