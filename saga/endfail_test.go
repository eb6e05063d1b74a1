package saga_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/topology/topologytest"
)

// failSagaEnd answers the saga's commit EndTxn with code (the first `times`
// times, every time when times < 0) without applying it; the processors'
// transactions are untouched. It returns the number of answers given.
func failSagaEnd(t *testing.T, h *topologytest.Harness, txnID string, code int16, times int32) *atomic.Int32 {
	t.Helper()
	var hits atomic.Int32
	h.Cluster.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		h.Cluster.KeepControl()
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit || end.TransactionalID != txnID {
			return nil, nil, false
		}
		if n := hits.Add(1); times >= 0 && n > times {
			return nil, nil, false
		}
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = code
		return resp, nil, true
	})
	return &hits
}

// An EndTxn of the saga answered with a non-retriable error that is not a
// fence (INVALID_TXN_STATE) leaves its commit unknown, as for the processor
// (topology.FencedError): the saga must not stop. It backs off, recreates its
// transactional session if franz-go cannot begin again, consumes the events
// again, and the transfer ends exactly once: no money created or lost.
func TestSagaGoesOnAfterNonFenceEndError(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	h.StartProcessor("w0", "")
	openAccounts(t, h, 100, false)
	hits := failSagaEnd(t, h, "kcqrs-transfers-s0", kerr.InvalidTxnState.Code, 1)
	s := startSaga(t, h, "s0")
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"e1","to":"bob","amount":30}`))
	// The saga stopping fails the test at once, not after the wait.
	deadline := time.Now().Add(90 * time.Second)
	for a := accounts(t, h); a["bob"].Balance != 30 || len(a["ann"].Pending) > 0; a = accounts(t, h) {
		select {
		case <-s.done:
			t.Fatalf("saga stopped on a non-fence End error: %v", s.err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfer never settled: %+v", a)
		}
	}
	waitMoney(t, h, 100, func(a map[string]account.Account) bool { return a["bob"].Balance == 30 && a["ann"].Balance == 70 })
	if hits.Load() == 0 {
		t.Fatal("the EndTxn control never ran")
	}
	// franz-go cannot begin again after this error: the session was
	// recreated (the path a producer left unusable takes).
	if n := s.Stats().SessionsRecreated; n < 1 {
		t.Errorf("sessions recreated: %d, want at least 1", n)
	}
	if c, r := transferEvents(t, h); c != 1 || r != 0 {
		t.Fatalf("%d completed and %d refunded transfers, want 1 and 0", c, r)
	}
	select {
	case <-s.done:
		t.Fatalf("saga stopped: %v", s.err)
	default:
	}
}

// A fenced saga (another producer took its transactional id) must stop.
func TestFencedSagaStops(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	h.StartProcessor("w0", "")
	openAccounts(t, h, 100, false)
	hits := failSagaEnd(t, h, "kcqrs-transfers-s1", kerr.ProducerFenced.Code, -1)
	s := startSagaWith(t, h, saga.Config{InstanceID: "s1"})
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"f1","to":"bob","amount":30}`))
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatal("a fenced saga did not stop")
	}
	if hits.Load() == 0 {
		t.Fatal("the EndTxn control never ran")
	}
	if !errors.Is(s.err, kerr.ProducerFenced) {
		t.Fatalf("saga ended with %v, want a ProducerFenced error", s.err)
	}
}
