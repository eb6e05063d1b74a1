package topology_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// An EndTxn answered with a non-retriable error that is not a fence
// (INVALID_TXN_STATE here) leaves the commit unknown, like any unconfirmed
// End: the worker must not stop. It backs off, catches the batch's stores up
// and consumes the batch again; the command is applied exactly once.
func TestNonRetriableEndErrorDoesNotStopTheWorker(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	w := h.StartProcessor("w0", "", func(c *topology.Config) {
		c.TransactionTimeout = 7 * time.Second
		c.SessionTimeout = 6 * time.Second
	})
	openAccountID(t, h, "nr")
	var hits atomic.Int32
	h.Cluster.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit || !hits.CompareAndSwap(0, 1) {
			return nil, nil, false
		}
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.InvalidTxnState.Code
		return resp, nil, true
	})
	dep := cmd("account", "nr", "Deposit", `{"amount":5}`)
	dep.ID = "nr-dep"
	rep, err := sendWithin(h, dep, 45*time.Second)
	if hits.Load() == 0 {
		t.Fatal("the EndTxn control never ran")
	}
	if werr := w.Err(); werr != nil {
		t.Fatalf("worker stopped on a non-retriable End error: %v", werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, rep, wire.StatusAccepted, 2)
	wantStatus(t, h.Send(cmd("account", "nr", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	if werr := w.Err(); werr != nil {
		t.Fatalf("worker stopped: %v", werr)
	}
	wantContiguous(t, h)
}

// A fenced producer must stop: another worker owns the transactional id.
func TestFencedEndStopsTheWorker(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	w := h.StartProcessor("w0", "")
	openAccountID(t, h, "fe")
	var hits atomic.Int32
	h.Cluster.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit {
			return nil, nil, false
		}
		hits.Add(1)
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.ProducerFenced.Code
		return resp, nil, true
	})
	res := sendAsync(h, cmd("account", "fe", "Deposit", `{"amount":5}`), 5*time.Second)
	pollUntil(t, "the fenced worker to stop", 30*time.Second, func() bool { return w.Err() != nil })
	if hits.Load() == 0 {
		t.Fatal("the EndTxn control never ran")
	}
	if !errors.Is(w.Err(), kerr.ProducerFenced) {
		t.Fatalf("worker ended with %v, want a ProducerFenced error", w.Err())
	}
	<-res
}
