package main

import (
	"net/http/httptest"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestHistoryCLIDotIDs: aggregate ids are Kafka keys, so "." and ".." are
// ids like any other; kcqrs history must ask for that aggregate, not for a
// path that an HTTP server cleans into another one (GET .../account/..
// is redirected to /v1/streams, a 404, which the CLI reported as "no such
// aggregate"). Ids with slashes, '%' and '?' reach the endpoint whole too.
func TestHistoryCLIDotIDs(t *testing.T) {
	h := startWorkers(t, false)
	svc, err := history.StartService(history.ServiceConfig{StateDir: t.TempDir(), ClientOpts: []kgo.Opt{kgo.SeedBrokers(h.Brokers...)}, Registry: h.Registry, Logger: h.Base.Logger})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	for _, id := range []string{"..", ".", "../..", "a/../b", "%2F?x=1#y"} {
		rep := h.Send(client.Command{AggregateType: "account", AggregateID: id, Type: "OpenAccount", JSON: []byte(`{"owner":"Dot","currency":"EUR"}`)})
		if rep.Status != wire.StatusAccepted {
			t.Fatalf("open %q: %+v", id, rep)
		}
		out, code, obj := run(t, runHistory, "account", id, "--url="+srv.URL, "--format", "json")
		evs, _ := obj["events"].([]any)
		if code != exitOK || len(evs) != 1 || obj["aggregateId"] != id {
			t.Errorf("history of %q: exit %d\n%s", id, code, out)
		}
		out, code, obj = run(t, runHistory, "account", id, "--url="+srv.URL, "--format", "json", "--at-version", "1")
		if code != exitOK || obj["version"] != float64(1) || obj["aggregateId"] != id {
			t.Errorf("state of %q at version 1: exit %d\n%s", id, code, out)
		}
	}
}
