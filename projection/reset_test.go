package projection

import (
	"context"
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestParseResetTarget(t *testing.T) {
	for in, want := range map[string]ResetTarget{
		"earliest":                       {Kind: ResetEarliest},
		"latest":                         {Kind: ResetLatest},
		"offset=42":                      {Kind: ResetOffset, Offset: 42},
		"timestamp=1700000000000":        {Kind: ResetTimestamp, Millis: 1700000000000},
		"timestamp=2023-11-14T22:13:20Z": {Kind: ResetTimestamp, Millis: 1700000000000},
	} {
		got, err := ParseResetTarget(in)
		if err != nil || got != want {
			t.Errorf("ParseResetTarget(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "start", "offset=-1", "offset=x", "timestamp=yesterday"} {
		if _, err := ParseResetTarget(bad); err == nil {
			t.Errorf("ParseResetTarget(%q) accepted", bad)
		}
	}
}

// snapshotState is what a reset may change: committed offsets of the
// version's groups, its topics, its local state directories.
func snapshotState(t *testing.T, e *env, cfg Config) (map[string][]PartitionProgress, map[string]bool, []string) {
	t.Helper()
	ctx := context.Background()
	pr, err := VersionProgress(ctx, e.adm, cfg.Names, "events")
	if err != nil {
		t.Fatal(err)
	}
	td, err := e.adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	topics := map[string]bool{}
	for _, name := range td.Names() {
		topics[name] = true
	}
	plan, err := PlanReset(ctx, e.adm, cfg, ResetTarget{})
	if err != nil {
		t.Fatal(err)
	}
	return pr.Groups, topics, plan.WipeDirs
}

func TestResetRefusesWhileLiveDryRunExecuteRebuilds(t *testing.T) {
	e := newEnv(t)
	n, _ := e.workload(4, 20, 6, "acc-")
	v1 := e.buildV1(t, n)
	ctx := context.Background()

	// Live: refused, nothing changed.
	plan, err := PlanReset(ctx, e.adm, v1.cfg, ResetTarget{Kind: ResetEarliest})
	if err != nil {
		t.Fatal(err)
	}
	var live *LiveGroupError
	var liveInst *LiveInstanceError
	if err := ExecuteReset(ctx, e.adm, plan); !errors.As(err, &live) && !errors.As(err, &liveInst) {
		t.Fatalf("reset of a live group: %v, want *LiveGroupError or *LiveInstanceError", err)
	}
	if ok, msg := v1.f.matches(v1.s.Handler()); !ok {
		t.Fatalf("refused reset changed the read models: %s", msg)
	}

	if err := v1.p.stop(); err != nil {
		t.Fatal(err)
	}
	v1.stopServer()
	eventually(t, "groups empty after the stop", func() (bool, string) {
		err := CheckNotLive(ctx, e.adm, v1.cfg.Names)
		return err == nil, ""
	})

	// Dry run: the plan is computed, nothing changes.
	groups, topics, dirs := snapshotState(t, e, v1.cfg)
	plan, err = PlanReset(ctx, e.adm, v1.cfg, ResetTarget{Kind: ResetEarliest})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Accounts) != testPartitions || len(plan.WipeDirs) == 0 || len(plan.DeleteTopics) != 5 {
		t.Fatalf("plan %s", plan)
	}
	for _, r := range plan.Accounts {
		if r.Target != 0 || r.Current <= 0 {
			t.Fatalf("plan for partition %d: %+v", r.Partition, r)
		}
	}
	g2, t2, d2 := snapshotState(t, e, v1.cfg)
	if !reflect.DeepEqual(groups, g2) || !reflect.DeepEqual(topics, t2) || !reflect.DeepEqual(dirs, d2) {
		t.Fatal("a dry run changed something")
	}

	// Execute: offsets moved, tables and local state gone.
	if err := ExecuteReset(ctx, e.adm, plan); err != nil {
		t.Fatal(err)
	}
	pr, err := GroupProgress(ctx, e.adm, string(v1.cfg.Names.AccountsGroup()), "events")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pr {
		if p.Committed != p.Start {
			t.Fatalf("after the reset partition %d is at %d, want %d", p.Partition, p.Committed, p.Start)
		}
	}
	for _, d := range plan.WipeDirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Fatalf("local state %s survived the reset", d)
		}
	}
	// A new client: kadm answers ListTopics from the client's cached metadata.
	fresh, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	td, err := kadm.NewClient(fresh).ListTopics(ctx, v1.cfg.Names.Tables()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range v1.cfg.Names.Tables() {
		if d, ok := td[name]; ok && d.Err == nil {
			t.Fatalf("table topic %s survived the reset", name)
		}
	}

	// Restart: the same read models again, rebuilt from the events.
	p2 := e.startProjector(v1.cfg)
	s2 := e.startServer(v1.dir, 1)
	eventually(t, "read models rebuilt", func() (bool, string) { return v1.f.matches(s2.Handler()) })
	if st := p2.Stats(); st.Applied != int64(n-1) || st.Gaps != 0 {
		t.Fatalf("rebuild stats %+v: want every account event applied once, no gaps", st)
	}
}
