package topology_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestSchemaRebuildWithAnIndexOneEventBehind: the history index stopped
// one event short of the snapshot's version (the indexer lagging when the
// worker starts). The rebuild through History must still give exactly the
// snapshot's state (the reader scans the unindexed tail), never the state
// one event earlier, and never a failed batch.
func TestSchemaRebuildWithAnIndexOneEventBehind(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p1 := h.StartProcessor("v1", "")
	wantStatus(t, h.Send(cmd("account", "lag", "OpenAccount", `{"owner":"Bob","currency":"USD"}`)), wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("account", "lag", "Deposit", `{"amount":7}`)), wire.StatusAccepted, 2)

	idx := indexEvents(t, h)
	// One more event the index never sees.
	wantStatus(t, h.Send(cmd("account", "lag", "Deposit", `{"amount":3}`)), wire.StatusAccepted, 3)
	if err := p1.Stop(); err != nil {
		t.Fatal(err)
	}
	if ptrs, err := idx.Lookup("account", "lag", 1, 0); err != nil || len(ptrs) != 2 {
		t.Fatalf("the index should hold versions 1 and 2 only: %v, %v", ptrs, err)
	}
	reader := historyReader(t, h, idx)
	reg := lossyRegistryV2(t)
	h.Registry = reg
	src := &recordingSource{r: reader}
	p2 := h.StartProcessor("v2-history", "", func(c *topology.Config) { c.History = src; c.SchemaTopic = "-" })
	wantStatus(t, h.Send(cmd("account", "lag", "Withdraw", `{"amount":2}`)), wire.StatusAccepted, 4)
	if n := p2.Stats().StateRebuilds; n != 1 {
		t.Fatalf("StateRebuilds = %d, want 1", n)
	}
	if src.calls.Load() != 1 || src.values.Load() != 3 || src.failed.Load() {
		t.Fatalf("the rebuild read %d values in %d calls (failed %v); want versions 1..3 through the history, no fallback",
			src.values.Load(), src.calls.Load(), src.failed.Load())
	}
	if err := p2.Stop(); err != nil {
		t.Fatal(err)
	}
	want := Account{Status: account.StatusOpen, Owner: "Bob", Currency: "USD", Balance: 8, Channel: "unknown"}
	if got := stateOf(t, h, reg, "lag"); got != want {
		t.Fatalf("after the rebuild: %+v, want %+v", got, want)
	}
}

// recordingSource records what the rebuild read through the history.
type recordingSource struct {
	r      *history.Reader
	calls  atomic.Int64
	values atomic.Int64
	failed atomic.Bool
}

func (s *recordingSource) EventValues(ctx context.Context, typ, id string, part int32, upTo int64) ([][]byte, error) {
	vals, err := s.r.EventValues(ctx, typ, id, part, upTo)
	s.calls.Add(1)
	s.values.Store(int64(len(vals)))
	if err != nil {
		s.failed.Store(true)
	}
	return vals, err
}
