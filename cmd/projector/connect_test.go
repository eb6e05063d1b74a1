package main

import (
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/binarytest"
	"github.com/kcqrs/kcqrs/topology/topologytest"
)

// TestProjectorSaysWhyItCannotConnect: a projector that cannot connect or
// log in (wrong password, wrong mechanism, no broker) serves /healthz and
// /readyz at once, both naming the cause (mechanism and user, never the
// password), logs it at ERROR at once, and keeps retrying with a backoff.
func TestProjectorSaysWhyItCannotConnect(t *testing.T) {
	kafkaRetryFirst = 50 * time.Millisecond // before t.Parallel: no other test runs yet
	t.Parallel()
	c := binarytest.Embedded(t, embedded.Options{Extra: []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(config.SASLScramSHA256, "admin", "admin-secret")}})
	brokers := strings.Join(c.ListenAddrs(), ",")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name, brokers, mechanism, password string
		want                               []string
	}{
		{"wrong password", brokers, config.SASLScramSHA256, "hunter2", []string{"SASL SCRAM-SHA-256", `user \"admin\"`}},
		{"wrong mechanism", brokers, config.SASLScramSHA512, "admin-secret", []string{"SASL SCRAM-SHA-512", `user \"admin\"`}},
		{"no broker", nobody, config.SASLScramSHA256, "admin-secret", []string{"cannot connect to Kafka broker " + nobody}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, _, err := load([]string{"--brokers", tt.brokers, "--state-dir", t.TempDir(), "--http", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--log-format", "json"},
				env("KCQRS_PROJECTOR_SASL_MECHANISM", tt.mechanism, "KCQRS_PROJECTOR_SASL_USER", "admin", "KCQRS_PROJECTOR_SASL_PASSWORD", tt.password))
			if err != nil {
				t.Fatal(err)
			}
			var logs topologytest.SyncBuffer
			base := startProjectorLogging(t, st, &logs)
			deadline := time.Now().Add(60 * time.Second)
			for {
				hc, hb := scrape(base + "/healthz")
				rc, rb := scrape(base + "/readyz")
				l := logs.String()
				ok := hc == 200 && rc == http.StatusServiceUnavailable && strings.Count(l, `"cannot use Kafka"`) >= 2
				for _, w := range tt.want {
					unq := strings.ReplaceAll(w, `\"`, `"`)
					ok = ok && strings.Contains(hb, unq) && strings.Contains(rb, unq) && strings.Contains(l, w)
				}
				if ok {
					for _, s := range []string{hb, rb, l} {
						if strings.Contains(s, "hunter2") || strings.Contains(s, "admin-secret") {
							t.Fatalf("a password is shown: %s", s)
						}
					}
					if !strings.Contains(l, `"level":"ERROR"`) || !strings.Contains(l, `"retry_in"`) {
						t.Fatalf("logs: %s", l)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("after 60s: /healthz %d %q, /readyz %d %q, logs:\n%s", hc, hb, rc, rb, l)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestREADMEProjectorExamplesDoNotCollide: a projector docs/read-models.md starts
// beside the demo's (a second version) listens on addresses of its own,
// not the first projector's 8088 and 8089 nor the processor's 8080.
func TestREADMEProjectorExamplesDoNotCollide(t *testing.T) {
	raw, err := os.ReadFile("../../docs/read-models.md")
	if err != nil {
		t.Fatal(err)
	}
	taken := []string{"127.0.0.1:8080", "127.0.0.1:8088", DefaultOpsAddr}
	found := false
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.Contains(line, "cmd/projector") || !strings.Contains(line, "--version 2") {
			continue
		}
		found = true
		f := strings.Fields(strings.Trim(line, " `.-123456789"))
		addrs := map[string]bool{}
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "--http" && f[i] != "--ops-addr" {
				continue
			}
			a := strings.Trim(f[i+1], "`.")
			if slices.Contains(taken, a) || addrs[a] {
				t.Errorf("docs/read-models.md starts a second projector on %s, which is taken:\n%s", a, line)
			}
			addrs[a] = true
		}
		if len(addrs) != 2 {
			t.Errorf("docs/read-models.md's second projector should set both --http and --ops-addr:\n%s", line)
		}
	}
	if !found {
		t.Fatal("docs/read-models.md has no example of a second projector version")
	}
}
