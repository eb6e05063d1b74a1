package topology

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TopicSpec is a topic the topology needs, with the configs it creates it
// with.
type TopicSpec struct {
	Name    string
	Role    string
	Configs map[string]*string
	// CoPartitioned topics must all have the command topic's partition
	// count: partition p of each belongs to the owner of command partition p.
	CoPartitioned bool
}

func ptr(s string) *string { return &s }

// Specs lists the topics of a config.
func (t Topics) Specs() []TopicSpec {
	return []TopicSpec{
		{Name: t.Commands, Role: "commands", CoPartitioned: true},
		{Name: t.Events, Role: "events", CoPartitioned: true, Configs: map[string]*string{
			"retention.ms": ptr("-1"), "retention.bytes": ptr("-1"),
		}},
		{Name: t.Changelog, Role: "changelog", CoPartitioned: true, Configs: map[string]*string{
			"cleanup.policy": ptr("compact"),
		}},
		{Name: t.Replies, Role: "replies"},
		{Name: t.DeadLetters, Role: "dead letters", Configs: map[string]*string{
			"retention.ms": ptr("-1"),
		}},
	}
}

// PartitionMismatchError reports co-partitioned topics whose partition
// counts disagree: a processor must not run on them, since the owner of a
// command partition would write another partition's events and snapshots.
type PartitionMismatchError struct {
	Counts map[string]int32
}

func (e *PartitionMismatchError) Error() string {
	var parts []string
	for t, n := range e.Counts {
		parts = append(parts, fmt.Sprintf("%s=%d", t, n))
	}
	return "topology: co-partitioned topics disagree on partition count (" + strings.Join(parts, ", ") +
		"); recreate them with one count, or add partitions to match (which moves aggregates between partitions: only on empty topics)"
}

// EnsureTopics creates the missing topics of t (with partitions and
// replication for new ones) and checks that the command, events and
// changelog topics share one partition count, which it returns.
func EnsureTopics(ctx context.Context, cl *kgo.Client, t Topics, partitions int32, replication int16) (int32, error) {
	adm := kadm.NewClient(cl)
	specs := t.Specs()
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	existing, err := describeTopics(ctx, cl, names...)
	if err != nil {
		return 0, fmt.Errorf("topology: list topics: %w", err)
	}
	for _, s := range specs {
		if _, ok := existing[s.Name]; ok {
			continue
		}
		resp, err := adm.CreateTopic(ctx, partitions, replication, s.Configs, s.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return 0, fmt.Errorf("topology: create %s topic %q: %w", s.Role, s.Name, err)
		}
	}
	described, err := describeTopics(ctx, cl, names...)
	if err != nil {
		return 0, fmt.Errorf("topology: list topics: %w", err)
	}
	counts := map[string]int32{}
	var want int32 = -1
	mismatch := false
	for _, s := range specs {
		n, ok := described[s.Name]
		if !ok {
			return 0, fmt.Errorf("topology: %s topic %q missing after create", s.Role, s.Name)
		}
		if !s.CoPartitioned {
			continue
		}
		counts[s.Name] = n
		if want == -1 {
			want = n
		} else if n != want {
			mismatch = true
		}
	}
	if mismatch {
		return 0, &PartitionMismatchError{Counts: counts}
	}
	return want, nil
}

// describeTopics returns the partition count of each of the named topics
// that exists. It asks a broker directly: kadm's ListTopics answers from the
// client's metadata cache, which keeps a topic unknown for a while after it
// was created.
func describeTopics(ctx context.Context, cl *kgo.Client, names ...string) (map[string]int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	for _, n := range names {
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr(n)
		req.Topics = append(req.Topics, t)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	out := map[string]int32{}
	for _, t := range resp.Topics {
		if t.Topic == nil {
			continue
		}
		switch err := kerr.ErrorForCode(t.ErrorCode); {
		case err == nil:
			out[*t.Topic] = int32(len(t.Partitions))
		case errors.Is(err, kerr.UnknownTopicOrPartition):
		default:
			return nil, fmt.Errorf("topic %q: %w", *t.Topic, err)
		}
	}
	return out, nil
}
