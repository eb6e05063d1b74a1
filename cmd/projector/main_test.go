package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/binarytest"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/wire"
)

var update = flag.Bool("update", false, "rewrite docs/operations.md's generated sections")

// env, scrape, metric: see binarytest.
var (
	env    = binarytest.Env
	scrape = binarytest.Scrape
	metric = binarytest.Metric
)

// TestLoad: settings come from flags and KCQRS_PROJECTOR_ variables (not
// the processor's KCQRS_ ones), and every problem is reported at once.
func TestLoad(t *testing.T) {
	tests := []binarytest.LoadCase[*settings]{
		{Name: "defaults", Env: env("KCQRS_STATE_DIR", "/processor/state", "KCQRS_BROKERS", "nohost"), Check: func(t *testing.T, st *settings) {
			if st.proj.StateDir != ".kcqrs/projector" || st.opsAddr != DefaultOpsAddr || st.httpAddr != "127.0.0.1:8088" ||
				st.proj.Names.Version != 1 || st.proj.SessionTimeout != 10*time.Second || len(st.versions) != 0 || st.queryOnly {
				t.Fatalf("defaults not applied: %+v", st)
			}
		}},
		{Name: "environment and flags", Args: []string{"--version", "3", "--brokers", "k1:9092,k2:9092"},
			Env: env("KCQRS_PROJECTOR_VERSION", "2", "KCQRS_PROJECTOR_SERVE_VERSIONS", "2,3", "KCQRS_PROJECTOR_OPS_ADDR", ":9100",
				"KCQRS_PROJECTOR_SASL_MECHANISM", "PLAIN", "KCQRS_PROJECTOR_SASL_USER", "u", "KCQRS_PROJECTOR_SASL_PASSWORD", "p"),
			Check: func(t *testing.T, st *settings) {
				if st.proj.Names.Version != 3 || fmt.Sprint(st.versions) != "[2 3]" || st.opsAddr != ":9100" ||
					strings.Join(st.proj.Brokers, ",") != "k1:9092,k2:9092" || st.kafka.SASLPassword != "p" {
					t.Fatalf("got %+v", st)
				}
			}},
		{Name: "everything wrong at once",
			Args: []string{"--version", "0", "--serve-versions", "2,x,1", "--log-format", "yaml", "--session-timeout", "5ms", "--replication", "0",
				"--progress-interval", "1ms", "--query-only", "--no-http", "extra"},
			Env: env("KCQRS_PROJECTOR_SASL_MECHANISM", "GSSAPI", "KCQRS_PROJECTOR_BROKERS", "nohost", "KCQRS_PROJECTOR_PPROF", "maybe"),
			Wants: []string{"--version 0", `"x" is not a version`, "1 after 2", `--log-format "yaml"`, "--session-timeout 5ms",
				"--replication 0", "--progress-interval 1ms", "--query-only and --no-http", `unexpected arguments ["extra"]`,
				`--sasl-mechanism "GSSAPI"`, `"nohost" is not host:port`, `KCQRS_PROJECTOR_PPROF="maybe"`}},
	}
	binarytest.RunLoad(t, func(args []string, env func(string) (string, bool)) (*settings, error) {
		st, _, err := load(args, env)
		return st, err
	}, tests)
}

// TestREADMEGenerated: docs/operations.md's projector configuration table is what
// the code says (go test ./cmd/projector -update rewrites it).
func TestREADMEGenerated(t *testing.T) {
	s := config.New("projector", EnvPrefix)
	bind(s, &settings{})
	raw, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	begin, end := "<!-- BEGIN projector config -->\n", "<!-- END projector config -->"
	i, j := strings.Index(readme, begin), strings.Index(readme, end)
	if i < 0 || j < i {
		t.Fatalf("docs/operations.md lacks the markers %q ... %q", strings.TrimSpace(begin), end)
	}
	if readme[i+len(begin):j] == s.Markdown() {
		return
	}
	if !*update {
		t.Fatalf("docs/operations.md section \"projector config\" is stale; run go test ./cmd/projector -run TestREADMEGenerated -update\nwant:\n%s", s.Markdown())
	}
	readme = readme[:i+len(begin)] + s.Markdown() + readme[j:]
	if err := os.WriteFile("../../docs/operations.md", []byte(readme), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDeploymentFiles: the projector service of docker-compose.yml uses
// only projector settings, serves its metrics on all interfaces, and
// Prometheus scrapes that address.
func TestDeploymentFiles(t *testing.T) {
	s := config.New("projector", EnvPrefix)
	bind(s, &settings{})
	known := map[string]bool{}
	for _, e := range s.Entries() {
		known[e.Env] = true
	}
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	compose := string(raw)
	names := regexp.MustCompile(`KCQRS_PROJECTOR_[A-Z0-9_]+`).FindAllString(compose, -1)
	if len(names) == 0 {
		t.Fatal("docker-compose.yml sets no KCQRS_PROJECTOR_ variable")
	}
	for _, name := range names {
		if !known[name] {
			t.Errorf("%s is not a projector setting", name)
		}
	}
	m := regexp.MustCompile(`KCQRS_PROJECTOR_OPS_ADDR: "?0\.0\.0\.0:(\d+)"?|KCQRS_PROJECTOR_OPS_ADDR: "?:(\d+)"?`).FindStringSubmatch(compose)
	if m == nil {
		t.Fatal("docker-compose.yml does not serve the projector's metrics beyond loopback (KCQRS_PROJECTOR_OPS_ADDR)")
	}
	port := m[1] + m[2]
	prom, err := os.ReadFile("../../deploy/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(prom), `"projector:`+port+`"`) {
		t.Errorf("deploy/prometheus.yml does not scrape projector:%s", port)
	}
	if !strings.Contains(compose, "\n  projector:\n") {
		t.Error("docker-compose.yml defines no projector service")
	}
}

// TestMetricsAndHealth runs the binary's projector against the embedded
// broker with SASL (SCRAM-SHA-256, so goka's sarama clients authenticate
// too), writes events in two rounds and scrapes /metrics until the lag,
// committed offsets and per-read-model counters show each round, and
// /readyz answers 200.
func TestMetricsAndHealth(t *testing.T) {
	c, err := embedded.Start(embedded.Options{Extra: []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(config.SASLScramSHA256, "admin", "admin-secret")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close) // after the projectors' cleanups stop them
	brokers := strings.Join(c.ListenAddrs(), ",")
	secret := env("KCQRS_PROJECTOR_SASL_MECHANISM", config.SASLScramSHA256, "KCQRS_PROJECTOR_SASL_USER", "admin", "KCQRS_PROJECTOR_SASL_PASSWORD", "admin-secret")
	st, _, err := load([]string{"--brokers", brokers, "--state-dir", t.TempDir(), "--http", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0",
		"--progress-interval", "100ms", "--session-timeout", "6s", "--pprof", "--log-format", "json"}, secret)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := st.kafka.Opts()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.DefaultProduceTopic("events"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	enc := encoder(t)
	produce := func(recs ...*kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	const n = 6
	var first []*kgo.Record
	for i := range n {
		id := "p-" + strconv.Itoa(i)
		first = append(first, &kgo.Record{Key: []byte(id), Value: enc(id, 1, account.AccountOpened{Owner: "P", Currency: "EUR"})})
	}
	produce(first...)

	base := startProjector(t, st)
	if code, _ := scrape(base + "/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, _ := scrape(base + "/debug/pprof/cmdline"); code != 200 {
		t.Fatalf("pprof: %d", code)
	}

	const accounts = `group="kcqrs-proj-accounts-v1"`
	waitFor := func(round string, checks map[string]float64, exact map[string]float64) string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			var bad []string
			_, text := scrape(base + "/metrics")
			for p, min := range checks {
				if v, ok := metric(text, p); !ok || v < min {
					bad = append(bad, fmt.Sprintf("%s >= %v (got %v, %v)", p, min, v, ok))
				}
			}
			for p, want := range exact {
				if v, ok := metric(text, p); !ok || v != want {
					bad = append(bad, fmt.Sprintf("%s == %v (got %v, %v)", p, want, v, ok))
				}
			}
			code, _ := scrape(base + "/readyz")
			if len(bad) == 0 && code == 200 {
				return text
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: after 60s: /readyz %d, metrics: %v\n%s", round, code, bad, text)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	text := waitFor("first round", map[string]float64{
		`kcqrs_projector_records_total\{` + accounts + `,outcome="applied"\}`:                                n,
		`kcqrs_projector_records_total\{group="kcqrs-proj-owners-v1",outcome="applied"\}`:                    n,
		`kcqrs_projector_records_total\{group="kcqrs-proj-totals-v1",outcome="applied"\}`:                    1, // one per currency, partition and batch
		`kcqrs_projector_committed_offset\{` + accounts + `,partition="[0-9]+",topic="events",version="1"\}`: 0,
		`kcqrs_projector_stable_offset\{` + accounts + `,partition="[0-9]+",topic="events",version="1"\}`:    n,
		`kcqrs_projector_events_total`: n,
	}, map[string]float64{
		`kcqrs_projector_caught_up\{version="1"\}`:                                1,
		`kcqrs_projector_ready`:                                                   1,
		`kcqrs_projector_active_version`:                                          1,
		`kcqrs_projector_records_total\{` + accounts + `,outcome="dead_letter"\}`: 0,
		// Plain (non-transactional) produces: a group that read everything
		// has committed up to the stable offset, so no lag is left.
		`kcqrs_projector_lag\{group="[^"]+",partition="[0-9]+",topic="[^"]+",version="1"\}`: 0,
	})
	// The committed offsets are the group's: every partition with events
	// has one, at its stable offset (in the same scrape as no lag).
	for p := range 3 {
		part := `,partition="` + strconv.Itoa(p) + `",topic="events",version="1"\}`
		so, _ := metric(text, `kcqrs_projector_stable_offset\{`+accounts+part)
		co, _ := metric(text, `kcqrs_projector_committed_offset\{`+accounts+part)
		if so > 0 && co != so {
			t.Fatalf("partition %d: committed %v, stable %v after catching up", p, co, so)
		}
	}

	// Second round: a redelivery, a gap and an undecodable record move the
	// counters; the committed offsets follow the new records.
	produce(
		&kgo.Record{Key: []byte("p-0"), Value: enc("p-0", 1, account.AccountOpened{Owner: "P", Currency: "EUR"})},
		&kgo.Record{Key: []byte("p-1"), Value: enc("p-1", 3, account.MoneyDeposited{Amount: 5, Balance: 5})},
		&kgo.Record{Key: []byte("p-2"), Value: []byte("not an event")},
	)
	waitFor("second round", map[string]float64{
		`kcqrs_projector_records_total\{` + accounts + `,outcome="applied"\}`:                             n + 1,
		`kcqrs_projector_records_total\{` + accounts + `,outcome="stale"\}`:                               1,
		`kcqrs_projector_records_total\{` + accounts + `,outcome="gap"\}`:                                 1,
		`kcqrs_projector_records_total\{` + accounts + `,outcome="dead_letter"\}`:                         2,
		`kcqrs_projector_stable_offset\{` + accounts + `,partition="[0-9]+",topic="events",version="1"\}`: n + 3,
	}, map[string]float64{
		`kcqrs_projector_caught_up\{version="1"\}`:                                              1,
		`kcqrs_projector_lag\{` + accounts + `,partition="[0-9]+",topic="events",version="1"\}`: 0,
	})
}

// startProjector runs the binary's projector until the test ends and
// returns the base URL of its ops endpoints.
func startProjector(t *testing.T, st *settings) string {
	t.Helper()
	return startProjectorLogging(t, st, io.Discard)
}

// startProjectorLogging is startProjector with its logs written to logs.
func startProjectorLogging(t *testing.T, st *settings, logs io.Writer) string {
	t.Helper()
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	return binarytest.Start(t, func(ctx context.Context, started func(string)) error {
		return run(ctx, st, reg, logs, started)
	}).Base
}

// TestReadyOnceBuilt: a query-only projector on a version nobody builds
// shows the whole events topic as lag and is not ready; once a builder
// (--no-http) has folded the events, its lag drops to zero and it turns
// ready.
func TestReadyOnceBuilt(t *testing.T) {
	c, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close) // after the projectors' cleanups stop them
	brokers := strings.Join(c.ListenAddrs(), ",")
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	enc := encoder(t)
	const n = 5
	for i := range n {
		id := "r-" + strconv.Itoa(i)
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(id), Value: enc(id, 1, account.AccountOpened{Owner: "R", Currency: "USD"})}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	common := []string{"--brokers", brokers, "--ops-addr", "127.0.0.1:0", "--progress-interval", "100ms", "--session-timeout", "6s"}
	qst, _, err := load(append([]string{"--query-only", "--state-dir", t.TempDir(), "--http", "127.0.0.1:0"}, common...), env())
	if err != nil {
		t.Fatal(err)
	}
	query := startProjector(t, qst)
	lag := `kcqrs_projector_lag\{group="kcqrs-proj-accounts-v1",partition="[0-9]+",topic="events",version="1"\}`
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, text := scrape(query + "/metrics")
		v, ok := metric(text, lag)
		if ok && v == n {
			if cu, _ := metric(text, `kcqrs_projector_caught_up\{version="1"\}`); cu != 0 {
				t.Fatalf("caught up with nothing built\n%s", text)
			}
			if r, _ := metric(text, `kcqrs_projector_ready`); r != 0 {
				t.Fatal("ready with nothing built")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag of the unbuilt version not %d after 60s\n%s", n, text)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := scrape(query + "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d with nothing built", code)
	}

	bst, _, err := load(append([]string{"--no-http", "--state-dir", t.TempDir()}, common...), env())
	if err != nil {
		t.Fatal(err)
	}
	builder := startProjector(t, bst)
	deadline = time.Now().Add(60 * time.Second)
	for {
		_, text := scrape(query + "/metrics")
		v, ok := metric(text, lag)
		qcode, _ := scrape(query + "/readyz")
		bcode, _ := scrape(builder + "/readyz")
		if ok && v == 0 && qcode == 200 && bcode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: lag %v, /readyz %d (query) %d (builder)\n%s", v, qcode, bcode, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// encoder returns what writes account events as the processor does.
func encoder(t *testing.T) func(id string, v int64, ev interface{ EventType() string }) []byte {
	envs, err := schemas.LoadEnvelopes()
	if err != nil {
		t.Fatal(err)
	}
	evc, err := envs.Codec("kcqrs.Event")
	if err != nil {
		t.Fatal(err)
	}
	acc, err := schemas.LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	return func(id string, v int64, ev interface{ EventType() string }) []byte {
		c, err := acc.Codec("kcqrs.example.account." + ev.EventType())
		if err != nil {
			t.Fatal(err)
		}
		payload, err := c.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		b, err := evc.Encode(wire.Event{AggregateType: "account", AggregateID: id, Version: v, EventType: ev.EventType(),
			CommandID: fmt.Sprintf("cmd-%s-%d", id, v), TimestampMillis: time.Now().UnixMilli(), Payload: payload})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}
