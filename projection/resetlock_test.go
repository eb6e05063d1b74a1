package projection

import (
	"context"
	"errors"
	"testing"
)

// TestResetSeesQueryServersAndHoldsLock: query servers are no group members,
// yet a reset must not delete their tables and stores under them; and a
// projector that starts while a reset acts waits for it.
func TestResetSeesQueryServersAndHoldsLock(t *testing.T) {
	e := newEnv(t)
	n, _ := e.workload(6, 10, 3, "acc-")
	v1 := e.buildV1(t, n)
	if err := v1.p.stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	eventually(t, "groups empty after the projector stopped", func() (bool, string) {
		return CheckNotLive(ctx, e.adm, v1.cfg.Names) == nil, ""
	})
	plan, err := PlanReset(ctx, e.adm, v1.cfg, ResetTarget{Kind: ResetEarliest})
	if err != nil {
		t.Fatal(err)
	}
	err = ExecuteReset(ctx, e.adm, plan)
	var live *LiveInstanceError
	if !errors.As(err, &live) || live.Registration.Kind != KindView {
		t.Fatalf("reset under a running query server: %v, want *LiveInstanceError of a view", err)
	}
	if ok, msg := v1.f.matches(v1.s.Handler()); !ok {
		t.Fatalf("refused reset changed the read models: %s", msg)
	}
	v1.stopServer()

	// The lock: a projector starting meanwhile waits; a second reset is refused.
	lock, err := LockForReset(ctx, v1.cfg, HeartbeatTTL)
	if err != nil {
		t.Fatal(err)
	}
	p2 := e.startProjector(v1.cfg)
	eventually(t, "the projector waits for the reset", func() (bool, string) { return p2.WaitingForReset(), "" })
	if _, err := LockForReset(ctx, v1.cfg, HeartbeatTTL); !errors.As(err, &live) || live.Registration.Kind != KindResetLock {
		t.Fatalf("second reset lock: %v, want *LiveInstanceError of the lock", err)
	}
	if st := p2.Stats(); st.Events != 0 {
		t.Fatalf("the projector ran during the reset: %+v", st)
	}
	if err := lock.Release(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := e.startServer(v1.dir, 1)
	eventually(t, "read models after the lock was released", func() (bool, string) { return v1.f.matches(s2.Handler()) })
	// And the other way round: with both running, the lock is refused.
	if _, err := LockForReset(ctx, v1.cfg, HeartbeatTTL); !errors.As(err, &live) {
		t.Fatalf("reset lock under a running projector and server: %v", err)
	}
}

// TestPartialResetNeedsAllowanceAndUnknownVersion: a reset to latest leaves
// read models without the accounts' history; it needs an explicit allowance
// that says so. A version that never existed has nothing to reset.
func TestPartialResetNeedsAllowanceAndUnknownVersion(t *testing.T) {
	e := newEnv(t)
	n, _ := e.workload(7, 6, 2, "acc-")
	v1 := e.buildV1(t, n)
	v1.stopServer()
	if err := v1.p.stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	eventually(t, "groups empty", func() (bool, string) { return CheckNotLive(ctx, e.adm, v1.cfg.Names) == nil, "" })
	plan, err := PlanReset(ctx, e.adm, v1.cfg, ResetTarget{Kind: ResetLatest})
	if err != nil {
		t.Fatal(err)
	}
	var inc *IncompleteResetError
	if err := ExecuteReset(ctx, e.adm, plan); !errors.As(err, &inc) || !contains(inc.Lacks, "no owner or currency") {
		t.Fatalf("reset to latest without the allowance: %v", err)
	}
	plan.AllowIncomplete = true
	if err := ExecuteReset(ctx, e.adm, plan); err != nil {
		t.Fatalf("reset to latest with the allowance: %v", err)
	}

	other := v1.cfg
	other.Names.Version = 7
	if _, err := PlanReset(ctx, e.adm, other, ResetTarget{Kind: ResetEarliest}); !errors.Is(err, ErrNoSuchVersion) {
		t.Fatalf("plan for a version that never existed: %v, want ErrNoSuchVersion", err)
	}
}
