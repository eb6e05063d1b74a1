package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/binarytest"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
)

// securedProjector starts a broker with SASL and ACLs, an events topic with
// n opened accounts (written by the superuser), and the projector binary as
// user "proj" with exactly perms; it returns the ops endpoints' base URL.
func securedProjector(t *testing.T, perms []topology.Permission, n int) string {
	t.Helper()
	c := binarytest.Embedded(t, embedded.Options{Extra: []kfake.Opt{kfake.EnableSASL(),
		kfake.Superuser(config.SASLScramSHA256, "admin", "admin-secret"),
		kfake.User(config.SASLScramSHA256, "proj", "proj-secret", topologytest.ACLs(perms)...),
		kfake.EnableACLs()}})
	admin := config.Kafka{Brokers: c.ListenAddrs(), SASLMechanism: config.SASLScramSHA256, SASLUser: "admin", SASLPassword: "admin-secret"}
	opts, err := admin.Opts()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic("events"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	enc := encoder(t)
	for i := range n {
		id := "p-" + strconv.Itoa(i)
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(id), Value: enc(id, 1, account.AccountOpened{Owner: "P", Currency: "EUR"})}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	st, _, err := load([]string{"--brokers", strings.Join(c.ListenAddrs(), ","), "--state-dir", t.TempDir(), "--http", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0",
		"--progress-interval", "100ms", "--session-timeout", "6s"},
		env("KCQRS_PROJECTOR_SASL_MECHANISM", config.SASLScramSHA256, "KCQRS_PROJECTOR_SASL_USER", "proj", "KCQRS_PROJECTOR_SASL_PASSWORD", "proj-secret"))
	if err != nil {
		t.Fatal(err)
	}
	return startProjector(t, st)
}

// projectorPermissions are the documented permissions of the default
// projector.
func projectorPermissions() []topology.Permission {
	return topology.ProjectorPermissions("events", "kcqrs-proj-")
}

// TestProjectorWithExactlyItsACLs: the projector binary given exactly its
// documented permissions builds its read models and turns ready.
func TestProjectorWithExactlyItsACLs(t *testing.T) {
	t.Parallel()
	if _, err := examples.Registry(); err != nil {
		t.Fatal(err)
	}
	const n = 4
	base := securedProjector(t, projectorPermissions(), n)
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, _ := scrape(base + "/readyz")
		_, text := scrape(base + "/metrics")
		// The accounts group folded every event; the totals group merged
		// (one counters record per currency, partition and batch).
		acc, aok := metric(text, `kcqrs_projector_records_total\{group="kcqrs-proj-accounts-v1",outcome="applied"\}`)
		tot, tok := metric(text, `kcqrs_projector_records_total\{group="kcqrs-proj-totals-v1",outcome="applied"\}`)
		if aok && acc >= n && tok && tot >= 1 && code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			hc, hb := scrape(base + "/healthz")
			t.Fatalf("after 90s: /readyz %d, /healthz %d %q\n%s", code, hc, hb, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestProjectorWithoutOneACL: without Read on the events topic, on its
// groups, or one of the prefixed permissions on its own topics (kcqrs-proj-*:
// tables, intermediate and dead-letter topics, asked by name before goka
// creates them), the projector says which permission it lacks on /healthz
// and /readyz (and retries: a grant made meanwhile is picked up). Create is
// checked too, on the topics of the version that do not exist yet.
func TestProjectorWithoutOneACL(t *testing.T) {
	t.Parallel()
	all := projectorPermissions()
	for i, p := range all {
		want := p.String()
		switch {
		case p.Prefixed && p.ResourceType == kmsg.ACLResourceTypeGroup:
			want = `READ on Group "kcqrs-proj-accounts-v1"`
		case p.Prefixed:
			want = p.Operation.String() + ` on Topic "kcqrs-proj-accounts-v1-table"`
		}
		t.Run(p.Operation.String()+" "+p.ResourceType.String()+" "+p.Resource, func(t *testing.T) {
			t.Parallel()
			base := securedProjector(t, topologytest.Without(all, i), 1)
			deadline := time.Now().Add(60 * time.Second)
			for {
				rc, rb := scrape(base + "/readyz")
				hc, hb := scrape(base + "/healthz")
				if rc == http.StatusServiceUnavailable && hc == http.StatusOK && strings.Contains(rb, want) && strings.Contains(hb, want) {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("after 60s: /readyz %d %q, /healthz %d %q; want %s named", rc, rb, hc, hb, want)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}
