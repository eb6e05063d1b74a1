package topology_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/topology"
)

func TestCheckTopicConfigs(t *testing.T) {
	var topics topology.Topics = topology.Defaults().Topics
	good := func() map[string]map[string]string {
		return map[string]map[string]string{
			"commands":            {"cleanup.policy": "delete"},
			"events":              {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1", "min.insync.replicas": "2"},
			"snapshots-changelog": {"cleanup.policy": "compact", "min.insync.replicas": "2"},
			"command_reply":       {},
			"commands-dlq":        {"retention.ms": "-1"},
		}
	}
	tests := []struct {
		name    string
		change  func(m map[string]map[string]string)
		wantKey string // "" when fine
		advice  string
	}{
		{"as created", func(map[string]map[string]string) {}, "", ""},
		{"changelog deleted by retention", func(m map[string]map[string]string) { m["snapshots-changelog"]["cleanup.policy"] = "delete" }, "snapshots-changelog\": cleanup.policy=delete, want compact", ""},
		{"changelog compact,delete", func(m map[string]map[string]string) { m["snapshots-changelog"]["cleanup.policy"] = "compact,delete" }, "cleanup.policy=compact,delete", ""},
		{"changelog policy absent (delete by default)", func(m map[string]map[string]string) { delete(m["snapshots-changelog"], "cleanup.policy") }, "want compact", ""},
		{"events with finite retention", func(m map[string]map[string]string) { m["events"]["retention.ms"] = "604800000" }, "retention.ms=604800000, want -1", ""},
		{"events retention absent (7 days by default)", func(m map[string]map[string]string) { delete(m["events"], "retention.ms") }, "retention.ms=604800000", ""},
		{"events size-bounded", func(m map[string]map[string]string) { m["events"]["retention.bytes"] = "1073741824" }, "retention.bytes=1073741824", ""},
		{"events compacted", func(m map[string]map[string]string) { m["events"]["cleanup.policy"] = "compact" }, "events\": cleanup.policy=compact, want delete", ""},
		{"commands compacted", func(m map[string]map[string]string) { m["commands"]["cleanup.policy"] = "compact" }, "commands topic \"commands\": cleanup.policy=compact", ""},
		{"min.insync.replicas 1 is advice, not an error", func(m map[string]map[string]string) { m["events"]["min.insync.replicas"] = "1" }, "", "min.insync.replicas=1"},
		{"unclean leader election is advice", func(m map[string]map[string]string) {
			m["snapshots-changelog"]["unclean.leader.election.enable"] = "true"
		}, "", "unclean.leader.election.enable=true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := good()
			tt.change(m)
			advice, err := topology.CheckTopicConfigs(topics, m)
			if tt.wantKey == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				var tce *topology.TopicConfigError
				if !errors.As(err, &tce) {
					t.Fatalf("err %v, want a TopicConfigError", err)
				}
				if !strings.Contains(err.Error(), tt.wantKey) || !strings.Contains(err.Error(), "kafka-configs.sh") {
					t.Fatalf("error lacks %q or the fix:\n%v", tt.wantKey, err)
				}
			}
			if got := strings.Join(advice, "\n"); tt.advice != "" && !strings.Contains(got, tt.advice) {
				t.Fatalf("advice %q lacks %q", got, tt.advice)
			}
		})
	}
}

// TestRefusesBadTopicConfig: an events topic created beforehand with a
// seven-day retention makes the worker refuse to start, saying how to fix it.
func TestRefusesBadTopicConfig(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ret := "604800000"
	if _, err := h.Admin().CreateTopic(ctx, partitions, -1, map[string]*string{"retention.ms": &ret}, h.Topic("events")); err != nil {
		t.Fatal(err)
	}
	r := h.StartProcessor("w0", "")
	select {
	case <-r.Done():
	case <-ctx.Done():
		t.Fatal("the worker kept running on an events topic with finite retention")
	}
	var tce *topology.TopicConfigError
	if !errors.As(r.Err(), &tce) || !strings.Contains(r.Err().Error(), "--entity-name "+h.Topic("events")+" --add-config retention.ms=-1") {
		t.Fatalf("Run: %v, want a TopicConfigError with the fix", r.Err())
	}
}
