package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestConsoleCommand: kcqrs console takes the connection settings every
// command takes (here KCQRS_BROKERS) and serves the console; --allow-redrive
// turns the re-drive on; stray arguments are refused.
func TestConsoleCommand(t *testing.T) {
	startWorkers(t, false)
	if _, code, _ := run(t, runConsole, "extra"); code != exitUsage {
		t.Fatalf("kcqrs console extra: exit %d, want %d", code, exitUsage)
	}
	for _, allow := range []bool{false, true} {
		args := []string{"--addr", "127.0.0.1:0"}
		if allow {
			args = append(args, "--allow-redrive")
		}
		addr, o, err := consoleOptions(args)
		if err != nil || addr != "127.0.0.1:0" || o.AllowRedrive != allow {
			t.Fatalf("consoleOptions(%v): %q %+v %v", args, addr, o.AllowRedrive, err)
		}
		srv, err := startConsole(addr, o)
		if err != nil {
			t.Fatal(err)
		}
		base := "http://" + srv.Addr().String()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		// The workers join their group in the background: poll until the
		// group is described (or the deadline passes, and the test fails).
		code, body, err := get(ctx, base+"/groups")
		for ctx.Err() == nil && (err != nil || code != http.StatusOK || !strings.Contains(body, "kcqrs-processor")) {
			time.Sleep(100 * time.Millisecond)
			code, body, err = get(ctx, base+"/groups")
		}
		if err != nil || code != http.StatusOK || !strings.Contains(body, "kcqrs-processor") {
			t.Errorf("GET /groups: %d %v\n%s", code, err, body)
		}
		// A position with no dead letter: 404 when allowed, 403 when not.
		resp, err := http.PostForm(base+"/deadletters/redrive", url.Values{"partition": {"0"}, "offset": {"999"}})
		want := http.StatusForbidden
		if allow {
			want = http.StatusNotFound
		}
		if err != nil || resp.StatusCode != want {
			t.Errorf("allow-redrive %v: POST redrive: %v %v, want %d", allow, resp, err, want)
		}
		if resp != nil {
			resp.Body.Close()
		}
		cancel()
		srv.Close()
	}
}
