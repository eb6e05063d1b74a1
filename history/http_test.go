package history_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/wire"
)

// TestEndpoints: the stream pages (limit, nextFromVersion), the state at a
// version, and a clear 4xx with a JSON error for every bad request (hostile
// ids included), never a 500.
func TestEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.h.StartProcessor("p1", "")
	e.openIndex(t.TempDir())
	e.send(cmd("account", "a/b c", "OpenAccount", `{"owner":"Ann","currency":"EUR"}`), wire.StatusAccepted)
	for range 4 {
		e.send(cmd("account", "a/b c", "Deposit", `{"amount":10}`), wire.StatusAccepted)
	}
	e.indexed(e.scan())
	get := jsonGetter(t, e.r, true)
	id := url.PathEscape("a/b c")
	code, page := get("/v1/streams/account/" + id + "?from_version=2&limit=2")
	evs, _ := page["events"].([]any)
	if code != 200 || len(evs) != 2 || page["nextFromVersion"] != float64(4) || page["aggregateId"] != "a/b c" {
		t.Fatalf("page from 2, limit 2: %d %v", code, page)
	}
	first := evs[0].(map[string]any)
	if first["version"] != float64(2) || first["eventType"] != "MoneyDeposited" || first["commandId"] == "" || first["payload"].(map[string]any)["amount"] != float64(10) {
		t.Fatalf("event: %v", first)
	}
	code, page = get("/v1/streams/account/" + id + "?from_version=4")
	if evs, _ := page["events"].([]any); code != 200 || len(evs) != 2 || page["nextFromVersion"] != nil {
		t.Fatalf("last page: %d %v", code, page)
	}
	code, st := get("/v1/aggregates/account/" + id + "?at_version=3")
	if s, _ := st["state"].(map[string]any); code != 200 || st["version"] != float64(3) || s["balance"] != float64(20) || s["owner"] != "Ann" {
		t.Fatalf("state at 3: %d %v", code, st)
	}
	code, st = get("/v1/aggregates/account/" + id)
	if s, _ := st["state"].(map[string]any); code != 200 || st["version"] != float64(5) || s["balance"] != float64(40) {
		t.Fatalf("latest state: %d %v", code, st)
	}
	for path, want := range map[string]int{
		"/v1/streams/teleporter/x":                                           404,
		"/v1/aggregates/teleporter/x":                                        404,
		"/v1/aggregates/account/" + id + "?at_version=6":                     404,
		"/v1/aggregates/account/nobody":                                      404,
		"/v1/streams/account/x?limit=0":                                      400,
		"/v1/streams/account/x?limit=100000":                                 400,
		"/v1/streams/account/x?from_version=-1":                              400,
		"/v1/streams/account/x?from_version=" + strings.Repeat("9", 40):      400,
		"/v1/aggregates/account/x?at_version=abc":                            400,
		"/v1/aggregates/account/x?at_time=yesterday":                         400,
		"/v1/aggregates/account/x?at_version=1&at_time=2026-01-01T00:00:00Z": 400,
	} {
		if code, obj := get(path); code != want || obj["error"] == nil {
			t.Errorf("GET %s: %d %v, want %d with an error", path, code, obj, want)
		}
	}
	// A stream that does not exist is an empty page, not an error.
	if code, page := get("/v1/streams/account/nobody"); code != 200 || len(page["events"].([]any)) != 0 {
		t.Fatalf("stream of nobody: %d %v", code, page)
	}
}
