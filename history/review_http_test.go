package history_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestEveryAnswerIsJSON: the endpoints' errors are {"error": ...} (README,
// docs/history.md), also for a request no route matches: an empty id, an
// id with a raw slash (it must be sent as %2F), a missing id, a method
// other than GET. Before, those got Go's plain-text "404 page not found"
// and "Method Not Allowed", which a client decoding JSON fails on. An id
// given as %2E%2E (the aggregate "..") reaches its stream.
func TestEveryAnswerIsJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.h.StartProcessor("p1", "")
	e.send(cmd("account", "..", "OpenAccount", `{"owner":"Dots","currency":"EUR"}`), wire.StatusAccepted)
	e.openIndex(t.TempDir())
	e.indexed(e.scan())
	srv := httptest.NewServer(history.Handler(e.r))
	defer srv.Close()
	do := func(method, path string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var obj map[string]any
		if err := json.Unmarshal(body, &obj); err != nil || obj["error"] == nil && resp.StatusCode != 200 {
			t.Errorf("%s %s: %d, not a JSON answer: %q", method, path, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
		return resp.StatusCode, obj
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1/streams/account/", 404},
		{"GET", "/v1/streams/account", 404},
		{"GET", "/v1/streams/account/a/b", 404},
		{"GET", "/v1/aggregates/account/", 404},
		{"GET", "/v1/aggregates/account/a/b/c", 404},
		{"GET", "/v1/nothing", 404},
		{"POST", "/v1/streams/account/x", 405},
		{"DELETE", "/v1/aggregates/account/x", 405},
	} {
		if code, obj := do(c.method, c.path); code != c.want {
			t.Errorf("%s %s: %d %v, want %d", c.method, c.path, code, obj, c.want)
		}
	}
	// An offset's '+' sent unescaped arrives as a space: still that time.
	code, st := do("GET", "/v1/aggregates/account/%2E%2E?at_time=9999-12-31T23:59:59+01:00")
	if code != 200 || st["version"] != float64(1) {
		t.Errorf("state at a time with an unescaped offset: %d %v", code, st)
	}
	code, page := do("GET", "/v1/streams/account/%2E%2E")
	if evs, _ := page["events"].([]any); code != 200 || len(evs) != 1 || page["aggregateId"] != ".." {
		t.Errorf("stream of \"..\": %d %v", code, page)
	}
}
