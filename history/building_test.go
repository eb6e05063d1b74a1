package history_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestNotIndexedYetSaysWhenToRetry: while the index of a partition is
// still being built, both endpoints answer 503 with a Retry-After header
// (a client or a load balancer knows to come back), not a bare 503.
func TestNotIndexedYetSaysWhenToRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.h.StartProcessor("p1", "")
	e.send(cmd("account", "b-1", "OpenAccount", `{"owner":"B","currency":"EUR"}`), wire.StatusAccepted)
	idx, err := history.Open(t.TempDir()) // no indexer: nothing indexed yet
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	cl, err := kgo.NewClient(e.clientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r, err := history.NewReader(history.ReaderConfig{Index: idx, Client: cl, Registry: e.h.Registry, Topic: e.h.Topic("events")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(history.Handler(r))
	defer srv.Close()
	for _, path := range []string{"/v1/streams/account/b-1", "/v1/aggregates/account/b-1"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("GET %s: %d, Retry-After %q; want 503 with Retry-After", path, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
}

// TestLaggingIndexBoundsTheRequestScan: while an index is far behind (a
// new worker building it), each HTTP request would scan the partition's
// whole unindexed tail. Past ReaderConfig.MaxTail the endpoints answer 503
// with Retry-After instead; History itself (the Go API, the schema-change
// rebuild) stays exact at any lag.
func TestLaggingIndexBoundsTheRequestScan(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.h.StartProcessor("p1", "")
	e.send(cmd("account", "lag-1", "OpenAccount", `{"owner":"L","currency":"EUR"}`), wire.StatusAccepted)
	for range 3 {
		e.send(cmd("account", "lag-1", "Deposit", `{"amount":1}`), wire.StatusAccepted)
	}
	idx, err := history.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	if _, err := idx.Apply(0, nil, 0); err != nil { // indexed up to offset 0: all of it is tail
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(e.clientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r, err := history.NewReader(history.ReaderConfig{Index: idx, Client: cl, Registry: e.h.Registry, Topic: e.h.Topic("events"), MaxTail: 3})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(history.Handler(r))
	defer srv.Close()
	for _, path := range []string{"/v1/streams/account/lag-1", "/v1/aggregates/account/lag-1"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("GET %s with a tail past MaxTail: %d; want 503 with Retry-After", path, resp.StatusCode)
		}
	}
	evs, err := r.History(context.Background(), "account", "lag-1", 1, 0)
	if err != nil || len(evs) != 4 {
		t.Fatalf("History at the same lag = %s, %v; want versions 1..4", describe(evs), err)
	}
}
