package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrOffsetsLost is matched (errors.Is) by the error Run returns when the
// saga's group has no committed offset for some partition of the events
// topic although the group has run before (its offsets expired with
// offsets.retention.minutes, or were deleted). franz-go would silently start
// such a partition over from the beginning (or the end); the saga stops
// instead, and an operator chooses where to resume (Resume, `kcqrs
// transfers resume`).
var ErrOffsetsLost = errors.New("saga: committed offsets lost")

// OffsetsLostError is the error behind ErrOffsetsLost.
type OffsetsLostError struct {
	Group, Topic string
	Partitions   []int32
	// Started is when the group first started (zero if unknown).
	Started time.Time
}

func (e *OffsetsLostError) Error() string {
	since := ""
	if !e.Started.IsZero() {
		since = " (it first started " + e.Started.UTC().Format(time.RFC3339) + ")"
	}
	return fmt.Sprintf("saga: group %q has no committed offset for %s partitions %v although it ran before%s: "+
		"its offsets were lost, and it does not replay or skip silently; choose where to resume with "+
		"`kcqrs transfers resume --group %s --at start|end|<RFC3339 time>` (a replay from the start moves no money, it only takes time)",
		e.Group, e.Topic, e.Partitions, since, e.Group)
}

// Is makes errors.Is(err, ErrOffsetsLost) true.
func (e *OffsetsLostError) Is(target error) bool { return target == ErrOffsetsLost }

// marker is the state topic's record of a group: it has started.
type marker struct {
	Started time.Time `json:"started"`
}

// checkOffsets runs before the group is joined. Every partition of the
// events topic must have a committed offset; if none has and the group
// never started (no marker), this is a genuine first start: it commits the
// start of every partition and writes the marker. A group that has started
// before and lacks an offset lost it: ErrOffsetsLost.
func (s *Saga) checkOffsets(ctx context.Context, adm *kadm.Client, cl *kgo.Client) error {
	missing, err := missingOffsets(ctx, adm, s.cfg.Group, s.cfg.Events)
	if err != nil {
		return err
	}
	m, found, err := readMarker(ctx, cl, s.cfg.StateTopic, s.cfg.Group)
	if err != nil {
		return err
	}
	switch {
	case len(missing) == 0 && found:
		return nil
	case len(missing) == 0:
		// A group from before the marker existed.
		return writeMarker(ctx, cl, s.cfg.StateTopic, s.cfg.Group)
	case found:
		return &OffsetsLostError{Group: s.cfg.Group, Topic: s.cfg.Events, Partitions: missing, Started: m.Started}
	}
	s.log.Info("first start of the saga group: from the start of the events topic", "group", s.cfg.Group, "partitions", len(missing))
	if _, err := commitAt(ctx, adm, s.cfg.Group, s.cfg.Events, missing, "start"); err != nil {
		return err
	}
	return writeMarker(ctx, cl, s.cfg.StateTopic, s.cfg.Group)
}

// missingOffsets lists the partitions of topic without a committed offset
// of group.
func missingOffsets(ctx context.Context, adm *kadm.Client, group, topic string) ([]int32, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("saga: list offsets of %q: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("saga: list offsets of %q: %w", topic, err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = nil, nil // a group never seen: no offsets
	}
	if err != nil {
		return nil, fmt.Errorf("saga: fetch offsets of group %q: %w", group, err)
	}
	var missing []int32
	ends.Each(func(o kadm.ListedOffset) {
		if c, ok := committed.Lookup(topic, o.Partition); !ok || c.Err != nil || c.At < 0 {
			missing = append(missing, o.Partition)
		}
	})
	slices.Sort(missing)
	return missing, nil
}

// commitAt commits, for group, the offsets of partitions of topic at a
// position: "start", "end" or an RFC 3339 time (the first event at or after
// it). It returns what it committed.
func commitAt(ctx context.Context, adm *kadm.Client, group, topic string, partitions []int32, at string) (map[int32]int64, error) {
	out, err := plan(ctx, adm, topic, partitions, at)
	if err != nil {
		return nil, err
	}
	return out, commit(ctx, adm, group, topic, out)
}

func commit(ctx context.Context, adm *kadm.Client, group, topic string, at map[int32]int64) error {
	offsets := kadm.Offsets{}
	for p, o := range at {
		offsets.Add(kadm.Offset{Topic: topic, Partition: p, At: o, LeaderEpoch: -1})
	}
	resp, err := adm.CommitOffsets(ctx, group, offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("saga: commit offsets of group %q: %w", group, err)
	}
	return nil
}

// readMarker reads the state topic (one compacted partition) to its end.
func readMarker(ctx context.Context, base *kgo.Client, topic, group string) (marker, bool, error) {
	adm := kadm.NewClient(base)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return marker{}, false, fmt.Errorf("saga: state topic %q: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, 0)
	if !ok || end.Offset == 0 {
		return marker{}, false, nil
	}
	cl, err := kgo.NewClient(append(base.Opts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return marker{}, false, fmt.Errorf("saga: state topic: %w", err)
	}
	defer cl.Close()
	var m marker
	found := false
	for {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		fs := cl.PollFetches(rctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return marker{}, false, err
		}
		if err := fs.Err0(); err != nil {
			return marker{}, false, fmt.Errorf("saga: read state topic %q: %w", topic, err)
		}
		last := int64(-1)
		fs.EachRecord(func(r *kgo.Record) {
			last = r.Offset
			if string(r.Key) != group {
				return
			}
			if r.Value == nil {
				found = false // deleted by an operator: the next start is a first one
				return
			}
			if json.Unmarshal(r.Value, &m) == nil {
				found = true
			}
		})
		// The marker is written without transactions and the newest
		// record is never compacted away: the record at end-1 exists.
		if last+1 >= end.Offset {
			return m, found, nil
		}
	}
}

func writeMarker(ctx context.Context, base *kgo.Client, topic, group string) error {
	v, _ := json.Marshal(marker{Started: time.Now().UTC()})
	if err := base.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(group), Value: v}).FirstErr(); err != nil {
		return fmt.Errorf("saga: write state topic %q: %w", topic, err)
	}
	return nil
}

// ResumeOptions says where a saga group whose offsets were lost resumes.
type ResumeOptions struct {
	// Brokers and ClientOpts reach the cluster.
	Brokers    []string
	ClientOpts []kgo.Opt
	// Group, Events and StateTopic as in Config (the same defaults).
	Group, Events, StateTopic string
	// At is "start" (replay every transfer event: safe, every step is
	// idempotent, but it takes time), "end" (skip what happened while the
	// offsets were lost: transfers debited then stay pending until
	// re-driven, see the README) or an RFC 3339 time (from the first event
	// at or after it: choose one before the loss).
	At string
	// All moves every partition, not only those without an offset; but
	// never forward past its committed offset (that would skip transfer
	// events never handled: their transfers would stay pending), unless
	// Forward is set too.
	All, Forward bool
	// DryRun computes the offsets and commits nothing.
	DryRun bool
}

// Resume commits offsets for a saga group that lost them (or, with All,
// moves it), and records that the group has started. It refuses while the
// group has members: stop every saga worker first. It returns the offsets
// per partition.
func Resume(ctx context.Context, o ResumeOptions) (map[int32]int64, error) {
	if o.Group == "" {
		o.Group = "kcqrs-transfers"
	}
	if o.Events == "" {
		o.Events = "events"
	}
	if o.StateTopic == "" {
		o.StateTopic = DefaultStateTopic
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...)}, o.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("saga: client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	groups, err := adm.DescribeGroups(ctx, o.Group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		groups, err = nil, nil // never seen: no members
	}
	if err != nil {
		return nil, fmt.Errorf("saga: describe group %q: %w", o.Group, err)
	}
	if g, ok := groups[o.Group]; ok && len(g.Members) > 0 {
		return nil, fmt.Errorf("saga: group %q has %d live member(s) (state %s): stop every saga worker first", o.Group, len(g.Members), g.State)
	}
	partitions, err := missingOffsets(ctx, adm, o.Group, o.Events)
	if err != nil {
		return nil, err
	}
	if o.All {
		ends, err := adm.ListEndOffsets(ctx, o.Events)
		if err != nil {
			return nil, fmt.Errorf("saga: list offsets of %q: %w", o.Events, err)
		}
		partitions = partitions[:0]
		ends.Each(func(l kadm.ListedOffset) { partitions = append(partitions, l.Partition) })
		slices.Sort(partitions)
	}
	if len(partitions) == 0 {
		return map[int32]int64{}, nil
	}
	out, err := plan(ctx, adm, o.Events, partitions, o.At)
	if err != nil {
		return nil, err
	}
	if !o.Forward {
		committed, err := adm.FetchOffsets(ctx, o.Group)
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			return nil, fmt.Errorf("saga: fetch offsets of group %q: %w", o.Group, err)
		}
		for p, at := range out {
			if c, ok := committed.Lookup(o.Events, p); ok && c.Err == nil && c.At >= 0 && c.At < at {
				out[p] = c.At
			}
		}
	}
	if o.DryRun {
		return out, nil
	}
	if err := commit(ctx, adm, o.Group, o.Events, out); err != nil {
		return nil, err
	}
	if err := createTopic(ctx, adm, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, o.StateTopic); err != nil {
		return nil, err
	}
	if _, found, err := readMarker(ctx, cl, o.StateTopic, o.Group); err != nil {
		return nil, err
	} else if !found {
		if err := writeMarker(ctx, cl, o.StateTopic, o.Group); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// plan lists the offsets commitAt would commit.
func plan(ctx context.Context, adm *kadm.Client, topic string, partitions []int32, at string) (map[int32]int64, error) {
	var listed kadm.ListedOffsets
	var err error
	switch at {
	case "start":
		listed, err = adm.ListStartOffsets(ctx, topic)
	case "end":
		listed, err = adm.ListEndOffsets(ctx, topic)
	default:
		t, perr := time.Parse(time.RFC3339, at)
		if perr != nil {
			return nil, fmt.Errorf("saga: resume at %q: want start, end or an RFC 3339 time: %w", at, perr)
		}
		listed, err = adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), topic)
	}
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("saga: list offsets of %q: %w", topic, err)
	}
	out := map[int32]int64{}
	for _, p := range partitions {
		o, ok := listed.Lookup(topic, p)
		if !ok {
			return nil, fmt.Errorf("saga: %s has no partition %d", topic, p)
		}
		if o.Offset < 0 { // no event at or after the time: the end
			ends, err := adm.ListEndOffsets(ctx, topic)
			if err != nil {
				return nil, fmt.Errorf("saga: list offsets of %q: %w", topic, err)
			}
			e, _ := ends.Lookup(topic, p)
			o.Offset = e.Offset
		}
		out[p] = o.Offset
	}
	return out, nil
}

// FormatOffsets prints offsets per partition, sorted: "0:12 1:40".
func FormatOffsets(m map[int32]int64) string {
	ps := make([]int32, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Itoa(int(p)) + ":" + strconv.FormatInt(m[p], 10))
	}
	return b.String()
}
