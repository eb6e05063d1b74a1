package main

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestHistoryCLIDotIDs: aggregate ids are Kafka keys, so "." and ".." are
// ids like any other; kcqrs history must ask for that aggregate, not for a
// path that an HTTP server cleans into another one (GET .../account/..
// is redirected to /v1/streams, a 404, which the CLI reported as "no such
// aggregate"). Ids with slashes, '%' and '?' reach the endpoint whole too,
// and ids that start with '-' are named after "--".
func TestHistoryCLIDotIDs(t *testing.T) {
	h := startWorkers(t, false)
	svc, err := history.StartService(history.ServiceConfig{StateDir: t.TempDir(), ClientOpts: []kgo.Opt{kgo.SeedBrokers(h.Brokers...)}, Registry: h.Registry, Logger: h.Base.Logger})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	// The service answers 503 (exit 1) until its first round has indexed
	// the partition: ask again then.
	hist := func(args ...string) (string, int, map[string]any) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			out, code, obj := run(t, runHistory, args...)
			if code != exitFailed || time.Now().After(deadline) {
				return out, code, obj
			}
		}
	}
	for _, id := range []string{"..", ".", "../..", "a/../b", "%2F?x=1#y", "-x", "--at-version"} {
		rep := h.Send(client.Command{AggregateType: "account", AggregateID: id, Type: "OpenAccount", JSON: []byte(`{"owner":"Dot","currency":"EUR"}`)})
		if rep.Status != wire.StatusAccepted {
			t.Fatalf("open %q: %+v", id, rep)
		}
		out, code, obj := hist("--url="+srv.URL, "--format", "json", "--", "account", id)
		evs, _ := obj["events"].([]any)
		if code != exitOK || len(evs) != 1 || obj["aggregateId"] != id {
			t.Errorf("history of %q: exit %d\n%s", id, code, out+fmt.Sprint(obj))
		}
		out, code, obj = hist("--url="+srv.URL, "--format", "json", "--at-version", "1", "--", "account", id)
		if code != exitOK || obj["version"] != float64(1) || obj["aggregateId"] != id {
			t.Errorf("state of %q at version 1: exit %d\n%s", id, code, out)
		}
	}
}
