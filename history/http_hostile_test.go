package history_test

import (
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/wire"
)

// TestHostileParameters: extreme but well-formed parameters get a clear
// answer: at_time=0001-01-01T00:00:00Z (Go's zero time, which At takes as
// "latest") is before every event, so 404, never the latest state;
// versions at the int64 limit neither overflow into "no bound" nor fail;
// a 100 KB id is an empty stream, not a 500.
func TestHostileParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.h.StartProcessor("p1", "")
	e.send(cmd("account", "h-1", "OpenAccount", `{"owner":"H","currency":"EUR"}`), wire.StatusAccepted)
	e.send(cmd("account", "h-1", "Deposit", `{"amount":1}`), wire.StatusAccepted)
	e.openIndex(t.TempDir())
	e.indexed(e.scan())
	get := jsonGetter(t, e.r, false)
	for path, want := range map[string]int{
		"/v1/aggregates/account/h-1?at_time=0001-01-01T00:00:00Z":             404,
		"/v1/aggregates/account/h-1?at_time=1970-01-01T00:00:00Z":             404,
		"/v1/aggregates/account/h-1?at_time=9999-12-31T23:59:59Z":             200,
		"/v1/aggregates/account/h-1?at_version=9223372036854775807":           404,
		"/v1/streams/account/h-1?from_version=9223372036854775807":            200,
		"/v1/streams/account/h-1?from_version=9223372036854775000&limit=1000": 200,
		"/v1/streams/account/" + strings.Repeat("x", 100_000):                 200,
	} {
		code, obj := get(path)
		if code != want {
			t.Errorf("GET %.120s: %d %v, want %d", path, code, obj, want)
			continue
		}
		if strings.Contains(path, "/streams/") {
			if evs, _ := obj["events"].([]any); len(evs) != 0 {
				t.Errorf("GET %.120s: %d events, want none", path, len(evs))
			}
		}
	}
}
