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
	specs := []TopicSpec{
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
	if t.Keys != "" {
		specs = append(specs, TopicSpec{Name: t.Keys, Role: "keys", CoPartitioned: true, Configs: map[string]*string{
			"cleanup.policy": ptr("compact"),
		}})
	}
	return specs
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
		if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
			return 0, fmt.Errorf("topology: create %s topic %q: %w", s.Role, s.Name, &PermissionError{Missing: []Permission{
				topicPerm(kmsg.ACLOperationCreate, s.Name, "create the missing topic (or create it beforehand)"),
			}})
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

// TopicConfigProblem is a topic config that would break a guarantee.
type TopicConfigProblem struct {
	Role, Topic string
	Key         string
	Have, Want  string
	Why         string
}

// TopicConfigError lists the configs of existing topics that would break
// the processor's guarantees; it refuses to run on them.
type TopicConfigError struct {
	Problems []TopicConfigProblem
}

func (e *TopicConfigError) Error() string {
	var b strings.Builder
	b.WriteString("topology: existing topics have configs that would break the processor's guarantees:")
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  - %s topic %q: %s=%s, want %s: %s", p.Role, p.Topic, p.Key, p.Have, p.Want, p.Why)
	}
	b.WriteString("\nfix them, then restart:")
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name %s --add-config %s=%s", p.Topic, p.Key, p.Want)
	}
	b.WriteString("\n(or kadm's AlterTopicConfigs with the same key and value)")
	return b.String()
}

// CheckTopicConfigs checks the effective configs of the topology's topics
// (topic -> key -> value; absent keys are taken as Kafka's defaults). It
// returns a *TopicConfigError for configs that break a guarantee, and advice
// for configs that weaken durability without breaking correctness.
func CheckTopicConfigs(t Topics, configs map[string]map[string]string) (advice []string, err error) {
	get := func(topic, key, def string) string {
		if v, ok := configs[topic][key]; ok {
			return v
		}
		return def
	}
	var problems []TopicConfigProblem
	policy := func(s TopicSpec) []string { return strings.Split(get(s.Name, "cleanup.policy", "delete"), ",") }
	for _, s := range t.Specs() {
		pol := policy(s)
		has := func(p string) bool {
			for _, x := range pol {
				if strings.TrimSpace(x) == p {
					return true
				}
			}
			return false
		}
		switch s.Role {
		case "keys":
			if !has("compact") || has("delete") {
				problems = append(problems, TopicConfigProblem{s.Role, s.Name, "cleanup.policy", strings.Join(pol, ","), "compact",
					"deletion by retention would destroy the data keys: every subject's personal data would become unreadable (docs/erasure.md)"})
			}
		case "changelog":
			if !has("compact") || has("delete") {
				problems = append(problems, TopicConfigProblem{s.Role, s.Name, "cleanup.policy", strings.Join(pol, ","), "compact",
					"deletion by retention would drop aggregates' only snapshots, and a restore would then start them from scratch"})
			}
		case "events":
			if has("compact") {
				problems = append(problems, TopicConfigProblem{s.Role, s.Name, "cleanup.policy", strings.Join(pol, ","), "delete",
					"compaction keeps only the last event per aggregate: the event history is the source of truth"})
			}
			for _, k := range []string{"retention.ms", "retention.bytes"} {
				def := "604800000"
				if k == "retention.bytes" {
					def = "-1"
				}
				if v := get(s.Name, k, def); v != "-1" {
					problems = append(problems, TopicConfigProblem{s.Role, s.Name, k, v, "-1",
						"events must be kept forever: projections and replays read them from the start"})
				}
			}
		case "commands", "dead letters":
			if has("compact") {
				problems = append(problems, TopicConfigProblem{s.Role, s.Name, "cleanup.policy", strings.Join(pol, ","), "delete",
					"compaction drops all but the last record of a key: earlier commands of an aggregate would be lost unread"})
			}
		}
		if v := get(s.Name, "min.insync.replicas", "1"); v == "1" && (s.Role == "events" || s.Role == "changelog" || s.Role == "keys") {
			advice = append(advice, fmt.Sprintf("%s topic %q has min.insync.replicas=1: an acknowledged write survives only on one broker; with replication factor 3 use min.insync.replicas=2", s.Role, s.Name))
		}
		if get(s.Name, "unclean.leader.election.enable", "false") == "true" {
			advice = append(advice, fmt.Sprintf("%s topic %q has unclean.leader.election.enable=true: committed records can be lost on failover", s.Role, s.Name))
		}
	}
	if len(problems) > 0 {
		return advice, &TopicConfigError{Problems: problems}
	}
	return advice, nil
}

// VerifyTopicConfigs reads the topics' effective configs and checks them
// with CheckTopicConfigs.
func VerifyTopicConfigs(ctx context.Context, cl *kgo.Client, t Topics) ([]string, error) {
	var names []string
	for _, s := range t.Specs() {
		names = append(names, s.Name)
	}
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("topology: describe topic configs: %w", err)
	}
	configs := map[string]map[string]string{}
	for _, rc := range rcs {
		if rc.Err != nil {
			if errors.Is(rc.Err, kerr.TopicAuthorizationFailed) {
				return nil, &PermissionError{Missing: []Permission{topicPerm(kmsg.ACLOperationDescribeConfigs, rc.Name, "verify topic configs")}}
			}
			return nil, fmt.Errorf("topology: describe configs of %q: %w", rc.Name, rc.Err)
		}
		m := map[string]string{}
		for _, c := range rc.Configs {
			if c.Value != nil {
				m[c.Key] = *c.Value
			}
		}
		configs[rc.Name] = m
	}
	return CheckTopicConfigs(t, configs)
}

// prepareTopics checks the worker's permissions, creates missing topics,
// checks co-partitioning and verifies the topics' configs, returning the
// partition count.
func (c *Config) prepareTopics(ctx context.Context, cl *kgo.Client) (int32, error) {
	if err := CheckPermissions(ctx, cl, *c); err != nil {
		return 0, err
	}
	n, err := EnsureTopics(ctx, cl, c.Topics, c.Partitions, c.ReplicationFactor)
	if err != nil {
		return 0, err
	}
	if err := c.ensureSchemaTopic(ctx, cl); err != nil {
		return 0, err
	}
	// Again, now that every topic exists: a broker may not report the
	// operations allowed on a topic that does not exist yet.
	if err := CheckPermissions(ctx, cl, *c); err != nil {
		return 0, err
	}
	advice, err := VerifyTopicConfigs(ctx, cl, c.Topics)
	for _, a := range advice {
		c.Logger.Info("topic config advice: " + a)
	}
	return n, err
}
