package main

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestHistoryCLI: kcqrs history prints an account's events (table and
// JSON), its state at a version and at a time, answers usage errors with
// exit 2 and an unknown version with exit 3; reindex refuses while a
// processor holds the index and rebuilds it when it is free.
func TestHistoryCLI(t *testing.T) {
	h := startWorkers(t, false)
	stateDir := t.TempDir()
	svc, err := history.StartService(history.ServiceConfig{StateDir: stateDir, ClientOpts: []kgo.Opt{kgo.SeedBrokers(h.Brokers...)}, Registry: h.Registry, Logger: h.Base.Logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	send := func(typ, data string, version int64) {
		t.Helper()
		rep := h.Send(client.Command{AggregateType: "account", AggregateID: "hx", Type: typ, JSON: []byte(data)})
		if rep.Status != wire.StatusAccepted || rep.Version != version {
			t.Fatalf("%s: %+v", typ, rep)
		}
	}
	send("OpenAccount", `{"owner":"Ann","currency":"EUR"}`, 1)
	send("Deposit", `{"amount":4200}`, 2)
	mid := time.Now().UTC()
	time.Sleep(5 * time.Millisecond) // the next event is accepted in a later millisecond
	send("Withdraw", `{"amount":200}`, 3)

	url := "--url=" + srv.URL
	out, code, _ := run(t, runHistory, "account", "hx", url)
	if code != exitOK || !strings.Contains(out, "AccountOpened") || !strings.Contains(out, "MoneyWithdrawn") || strings.Count(out, "\n") != 4 {
		t.Fatalf("history table: exit %d\n%s", code, out)
	}
	out, code, obj := run(t, runHistory, "account", "hx", url, "--format", "json", "--from-version", "2")
	evs, _ := obj["events"].([]any)
	if code != exitOK || len(evs) != 2 || evs[0].(map[string]any)["version"] != float64(2) {
		t.Fatalf("history json from version 2: exit %d\n%s", code, out)
	}
	if p := evs[0].(map[string]any)["payload"].(map[string]any); p["amount"] != float64(4200) {
		t.Fatalf("payload of version 2: %v", p)
	}
	out, code, obj = run(t, runHistory, "account", "hx", url, "--at-version", "2", "--format", "json")
	if st, _ := obj["state"].(map[string]any); code != exitOK || obj["version"] != float64(2) || st["balance"] != float64(4200) {
		t.Fatalf("state at version 2: exit %d\n%s", code, out)
	}
	out, code, obj = run(t, runHistory, "account", "hx", url, "--at-time", mid.Format(time.RFC3339Nano), "--format", "json")
	if st, _ := obj["state"].(map[string]any); code != exitOK || obj["version"] != float64(2) || st["balance"] != float64(4200) {
		t.Fatalf("state at %s: exit %d\n%s", mid, code, out)
	}
	if out, code, _ := run(t, runHistory, "account", "hx", url, "--at-version", "9"); code != exitRejected {
		t.Fatalf("state at a version it never had: exit %d\n%s", code, out)
	}
	if _, code, _ := run(t, runHistory, "account", url); code != exitUsage {
		t.Fatalf("history without an id: exit %d", code)
	}
	if _, code, _ := run(t, runHistory, "account", "hx", url, "--at-version", "1", "--at-time", mid.Format(time.RFC3339)); code != exitUsage {
		t.Fatalf("both --at-version and --at-time: exit %d", code)
	}

	// reindex: refused while the service holds the index, then rebuilt.
	if _, code, _ := run(t, runReindex, "--state-dir", stateDir); code == exitOK {
		t.Fatal("reindex succeeded while a service holds the index")
	}
	var before []string
	idxDump := func() []string {
		idx, err := history.Open(history.IndexDir(stateDir, "events"))
		if err != nil {
			t.Fatal(err)
		}
		defer idx.Close()
		var out []string
		if err := idx.Dump(func(typ, id string, p history.Pointer) {
			b, _ := json.Marshal(p)
			out = append(out, typ+"/"+id+string(b))
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// Reads above were exact whether or not the indexer had caught up
	// (the unindexed tail is scanned); wait for it before comparing.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if ptrs, err := svc.Reader().Index().Lookup("account", "hx", 1, 0); err == nil && len(ptrs) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the index never got version 3")
		}
		select {
		case <-svc.Indexer().Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	before = idxDump()
	if len(before) != 3 {
		t.Fatalf("index before reindex: %v", before)
	}
	if out, code, _ := run(t, runReindex, "--state-dir", stateDir); code != exitOK || !strings.Contains(out, "3 events indexed") {
		t.Fatalf("reindex: exit %d\n%s", code, out)
	}
	if after := idxDump(); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("reindexed index differs:\n%v\nwant\n%v", after, before)
	}
}
