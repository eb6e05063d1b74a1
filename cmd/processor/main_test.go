package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/binarytest"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/ops"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

var update = flag.Bool("update", false, "rewrite docs/operations.md's generated sections")

// env, metric: see binarytest.
var (
	env    = binarytest.Env
	metric = binarytest.Metric
)

// TestLoad: settings come from flags and the environment, and every
// problem of a bad configuration is reported at once.
func TestLoad(t *testing.T) {
	tests := []binarytest.LoadCase[*settings]{
		{Name: "defaults", Env: env(), Check: func(t *testing.T, st *settings) {
			d := topology.Defaults()
			if st.cfg.CommitInterval != d.CommitInterval || st.cfg.MaxBatch != d.MaxBatch || st.cfg.Partitions != d.Partitions ||
				st.cfg.Group != d.Group || st.httpAddr != ops.DefaultAddr || st.cfg.InstanceID == "" {
				t.Fatalf("defaults not applied: %+v", st.cfg)
			}
		}},
		{Name: "environment and flags", Args: []string{"--max-batch", "7", "--brokers", "k1:9092,k2:9092"},
			Env: env("KCQRS_COMMIT_INTERVAL", "250ms", "KCQRS_MAX_BATCH", "3", "KCQRS_FETCH_MAX_BYTES", "8MiB", "KCQRS_MEMORY_LIMIT", "250MiB", "KCQRS_INSTANCE_ID", "w-7", "KCQRS_SASL_MECHANISM", "SCRAM-SHA-512", "KCQRS_SASL_USER", "u", "KCQRS_SASL_PASSWORD", "p", "KCQRS_TRANSFER_SIGNING_KEY", "legs"),
			Check: func(t *testing.T, st *settings) {
				if string(st.cfg.CommandSigningKey) != "legs" || st.derivedKey || len(st.cfg.InternalCommands["account"]) != 3 {
					t.Fatalf("signing key %q (derived %v), internal commands %v", st.cfg.CommandSigningKey, st.derivedKey, st.cfg.InternalCommands)
				}
				if st.cfg.CommitInterval != 250*time.Millisecond || st.cfg.MaxBatch != 7 || st.cfg.InstanceID != "w-7" ||
					strings.Join(st.cfg.Brokers, ",") != "k1:9092,k2:9092" || st.kafka.SASLPassword != "p" ||
					st.cfg.FetchMaxBytes != 8<<20 || st.memoryLimit != 250<<20 || st.cfg.FetchMaxPartitionBytes != topology.Defaults().FetchMaxPartitionBytes {
					t.Fatalf("got %+v / %+v", st.cfg, st.kafka)
				}
			}},
		{Name: "everything wrong at once",
			Args: []string{"--commit-interval", "soon", "--max-batch", "0", "--transaction-timeout", "10ms", "--partitions", "0", "--replication-factor", "0", "--log-format", "yaml", "--events-topic", "commands", "--max-command-bytes", "-1", "--cache-size", "-5", "--fetch-max-bytes", "-1", "--fetch-max-partition-bytes", "3GiB", "--memory-limit", "-1"},
			Env:  env("KCQRS_DEDUPE_WINDOW", "many", "KCQRS_SASL_MECHANISM", "GSSAPI", "KCQRS_BROKERS", "nohost"),
			Wants: []string{`--commit-interval="soon"`, "max batch 0 < 1", "transaction timeout 10ms < 1s", "partitions 0 < 1",
				"--replication-factor 0", `--log-format "yaml"`, `KCQRS_DEDUPE_WINDOW="many"`, `--sasl-mechanism "GSSAPI"`,
				`"nohost" is not host:port`, `topic "commands" is both`, "max command bytes -1 < 1", "cache bytes -5 < 0",
				"fetch max bytes -1 not in", "fetch max partition bytes 3221225472 not in", "--memory-limit -1 < 0"}},
		{Name: "transfers on an authenticating Kafka need the signing key", Env: env("KCQRS_SASL_MECHANISM", "PLAIN", "KCQRS_SASL_USER", "u", "KCQRS_SASL_PASSWORD", "p"),
			Wants: []string{"--transfer-signing-key (or KCQRS_TRANSFER_SIGNING_KEY) is required with --transfers"}},
		{Name: "no signing key and no saga: every leg refused", Args: []string{"--transfers=false"}, Env: env("KCQRS_SASL_MECHANISM", "PLAIN", "KCQRS_SASL_USER", "u", "KCQRS_SASL_PASSWORD", "p"),
			Check: func(t *testing.T, st *settings) {
				if len(st.cfg.CommandSigningKey) != 0 || len(st.cfg.InternalCommands["account"]) != 3 {
					t.Fatalf("signing key %q, internal commands %v", st.cfg.CommandSigningKey, st.cfg.InternalCommands)
				}
			}},
		{Name: "without authentication the key is derived from the group", Env: env("KCQRS_INSTANCE_ID", "w-1"), Check: func(t *testing.T, st *settings) {
			other, _, err := load([]string{"--instance-id", "w-2", "--transfers=false"}, env(), false)
			if err != nil {
				t.Fatal(err)
			}
			if !st.derivedKey || len(st.cfg.CommandSigningKey) == 0 || string(st.cfg.CommandSigningKey) != string(other.cfg.CommandSigningKey) {
				t.Fatalf("derived keys %x and %x: want the same on every worker of the group", st.cfg.CommandSigningKey, other.cfg.CommandSigningKey)
			}
			third, _, err := load([]string{"--group", "another"}, env(), false)
			if err != nil {
				t.Fatal(err)
			}
			if string(third.cfg.CommandSigningKey) == string(st.cfg.CommandSigningKey) {
				t.Fatal("another group derived the same key")
			}
		}},
		{Name: "stray argument", Args: []string{"run"}, Env: env(), Wants: []string{`unexpected arguments ["run"]`}},
		{Name: "reply topics", Env: env("KCQRS_REPLY_TOPICS", "replies-*,my-replies"), Check: func(t *testing.T, st *settings) {
			if got := strings.Join(st.cfg.ReplyTopics, ","); got != "replies-*,my-replies" {
				t.Fatalf("reply topics %q: want the configured ones", got)
			}
			if got := strings.Join(st.cfg.InternalTopics, ","); got != "kcqrs-proj-*,kcqrs-transfers-*,transfer-replies" {
				t.Fatalf("internal topics %q", got)
			}
		}},
		{Name: "unsafe reply topics", Args: []string{"--reply-topics", "snapshots-*,__consumer_offsets"}, Env: env(),
			Wants: []string{`reply topic "snapshots-*" would allow "snapshots-changelog"`, `reply topic "__consumer_offsets" would allow "__*"`}},
		// The saga's legs are answered on the default reply topic; the topic
		// they once named is internal, with or without the saga.
		{Name: "the saga's retired reply topic", Args: []string{"--reply-topics", "transfer-replies"}, Env: env(),
			Wants: []string{`reply topic "transfer-replies" would allow "transfer-replies"`}},
		{Name: "the saga's retired reply topic without the saga", Args: []string{"--transfers=false", "--reply-topics", "transfer-replies"}, Env: env(),
			Wants: []string{`reply topic "transfer-replies" would allow "transfer-replies"`}},
		{Name: "command larger than a record", Args: []string{"--max-record-bytes", "800000"}, Env: env(),
			Wants: []string{"max command bytes 921600 does not leave 16384 bytes below the record limit 800000"}},
	}
	binarytest.RunLoad(t, func(args []string, env func(string) (string, bool)) (*settings, error) {
		st, _, err := load(args, env, false)
		return st, err
	}, tests)
}

// section returns the text of docs/operations.md between the two marker lines.
func section(t *testing.T, readme, name string) (before, body, after string) {
	t.Helper()
	begin, end := "<!-- BEGIN "+name+" -->\n", "<!-- END "+name+" -->"
	i, j := strings.Index(readme, begin), strings.Index(readme, end)
	if i < 0 || j < i {
		t.Fatalf("docs/operations.md lacks the markers %q ... %q", strings.TrimSpace(begin), end)
	}
	return readme[:i+len(begin)], readme[i+len(begin) : j], readme[j:]
}

// TestREADMEGenerated: docs/operations.md's configuration table and topology
// diagram are what the code says (go test ./cmd/processor -update rewrites
// them).
func TestREADMEGenerated(t *testing.T) {
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	s := config.New("processor", "")
	bind(s, &settings{}, false)
	want := map[string]string{
		"processor config":   s.Markdown(),
		"topology diagram":   "```mermaid\n" + topology.Describe(topology.Config{Partitions: topology.Defaults().Partitions}, reg).Mermaid() + "```\n",
		"processor describe": "```\n" + topology.Describe(topology.Config{Partitions: topology.Defaults().Partitions}, reg).Text() + "```\n",
	}
	raw, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	for _, name := range []string{"processor config", "topology diagram", "processor describe"} {
		before, body, after := section(t, readme, name)
		if body == want[name] {
			continue
		}
		if *update {
			readme = before + want[name] + after
			continue
		}
		t.Errorf("docs/operations.md section %q is stale; run go test ./cmd/processor -run TestREADMEGenerated -update\nwant:\n%s", name, want[name])
	}
	if *update {
		if err := os.WriteFile("../../docs/operations.md", []byte(readme), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// scrape is binarytest.Scrape.
func scrape(t *testing.T, url string) (int, string) {
	t.Helper()
	return binarytest.Scrape(url)
}

// startWorker runs the binary with st (the examples' registry, logs
// discarded) until the test ends: see binarytest.Start.
func startWorker(t *testing.T, st *settings) *binarytest.Running {
	t.Helper()
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	return binarytest.Start(t, func(ctx context.Context, started func(string)) error {
		return run(ctx, st, reg, io.Discard, started)
	})
}

// dialClient is a command client of brokers (topologytest.WaitClient:
// the worker creates the topics as it starts), closed when the test ends.
func dialClient(ctx context.Context, t *testing.T, brokers []string) *client.Client {
	t.Helper()
	cl, err := topologytest.WaitClient(ctx, client.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestMetricsAndHealth runs the binary's worker against the embedded
// broker, sends commands, and scrapes the endpoints until the metrics show
// the work and /readyz answers 200.
func TestMetricsAndHealth(t *testing.T) {
	c := binarytest.Embedded(t, embedded.Options{})
	st, _, err := load([]string{"--brokers", strings.Join(c.ListenAddrs(), ","), "--state-dir", t.TempDir(), "--instance-id", "m0",
		"--partitions", "4", "--http-addr", "127.0.0.1:0", "--pprof", "--log-format", "json"}, env(), false)
	if err != nil {
		t.Fatal(err)
	}
	base := startWorker(t, st).Base
	if code, _ := scrape(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, _ := scrape(t, base+"/debug/pprof/cmdline"); code != 200 {
		t.Fatalf("pprof: %d", code)
	}

	cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer ccancel()
	cl := dialClient(cctx, t, st.cfg.Brokers)
	const n = 12
	for i := range n {
		id := "m-" + strconv.Itoa(i)
		if _, err := cl.Send(cctx, client.Command{AggregateType: "account", AggregateID: id, Type: "OpenAccount", JSON: []byte(`{"owner":"M","currency":"EUR"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.Send(cctx, client.Command{AggregateType: "account", AggregateID: "m-bad", Type: "Deposit", Avro: []byte("not avro")}); err != nil {
		t.Fatal(err)
	}

	checks := map[string]float64{
		`kcqrs_commands_total\{duplicate="false",outcome="accepted"\}`: n,
		`kcqrs_commands_total\{duplicate="false",outcome="invalid"\}`:  1,
		`kcqrs_dead_letters_total`:                                     1,
		`kcqrs_command_reply_latency_seconds_count`:                    n + 1,
		`kcqrs_transaction_commit_seconds_count`:                       1,
		`kcqrs_transaction_commands_count`:                             1,
		`kcqrs_transactions_total\{result="committed"\}`:               1,
		`kcqrs_consumer_lag\{partition="[0-9]+"\}`:                     0,
		`kcqrs_store_bytes\{partition="[0-9]+"\}`:                      1,
		`kcqrs_partition_ready\{partition="[0-9]+",role="active"\}`:    4,
		`kcqrs_kafka_produce_bytes_total\{[^}]*\}`:                     1,
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var missing []string
		_, text := scrape(t, base+"/metrics")
		for p, min := range checks {
			if v, ok := metric(text, p); !ok || v < min {
				missing = append(missing, p+" (want >= "+strconv.FormatFloat(min, 'f', -1, 64)+")")
			}
		}
		code, _ := scrape(t, base+"/readyz")
		if len(missing) == 0 && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: /readyz %d, metrics missing or low: %v\n%s", code, missing, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDeploymentFiles: the container files use only settings the processor
// has, keep the single-node transaction settings, and Prometheus scrapes
// services that exist.
func TestDeploymentFiles(t *testing.T) {
	s := config.New("processor", "")
	bind(s, &settings{}, false)
	known := map[string]bool{}
	for _, e := range s.Entries() {
		known[e.Env] = true
	}
	compose, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	docker, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`KCQRS_[A-Z0-9_]+`).FindAllString(string(compose)+string(docker), -1) {
		// The projector's own variables are checked by cmd/projector's test.
		if !known[name] && !strings.HasPrefix(name, "KCQRS_PROJECTOR_") {
			t.Errorf("%s is not a processor setting", name)
		}
	}
	for _, want := range []string{"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: 1", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: 1", "KAFKA_PROCESS_ROLES: broker,controller"} {
		if !strings.Contains(string(compose), want) {
			t.Errorf("docker-compose.yml lacks %q", want)
		}
	}
	prom, err := os.ReadFile("../../deploy/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`"([a-z0-9-]+):8080"`).FindAllStringSubmatch(string(prom), -1) {
		if !strings.Contains(string(compose), "\n  "+m[1]+":\n") {
			t.Errorf("prometheus.yml scrapes %s, which docker-compose.yml does not define", m[1])
		}
	}
}

// SIGTERM ends the worker cleanly (exit 0: the open transaction ended, the
// stores closed, the group left), and the restarted worker restores no
// snapshot record: its stores were complete.
func TestSIGTERMLeavesNothingToRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the processor binary")
	}
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "processor")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c := binarytest.Embedded(t, embedded.Options{})
	brokers := c.ListenAddrs()
	state := filepath.Join(dir, "state")

	run := func(n int) (stop func() string) {
		logPath := filepath.Join(dir, fmt.Sprintf("run%d.log", n))
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--brokers", brokers[0], "--instance-id", "t0", "--state-dir", state, "--partitions", "3", "--commit-interval", "20ms", "--http-addr", "127.0.0.1:0")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait(); logf.Close() }()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return func() string {
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run %d: exit after SIGTERM: %v", n, err)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("run %d: no exit within 60s of SIGTERM", n)
			}
			out, _ := os.ReadFile(logPath)
			if !strings.Contains(string(out), "processor stopped cleanly") {
				t.Fatalf("run %d did not stop cleanly:\n%s", n, out)
			}
			return string(out)
		}
	}
	send := func(cl *client.Client, id, typ, body string, version int64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		rep, err := cl.Send(ctx, client.Command{AggregateType: "account", AggregateID: id, Type: typ, JSON: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Status != wire.StatusAccepted || rep.Version != version {
			t.Fatalf("%s %s: %+v", typ, id, rep)
		}
	}
	newClient := func() *client.Client {
		deadline := time.Now().Add(60 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			cl, err := client.New(ctx, client.Config{Brokers: brokers})
			cancel()
			if err == nil {
				return cl
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	stop := run(1)
	cl := newClient()
	defer cl.Close()
	ids := []string{"a", "b", "c", "d", "e", "f"}
	for _, id := range ids {
		send(cl, id, "OpenAccount", `{"owner":"O","currency":"EUR"}`, 1)
		send(cl, id, "Deposit", `{"amount":5}`, 2)
	}
	stop()

	stop = run(2)
	for _, id := range ids {
		send(cl, id, "Deposit", `{"amount":1}`, 3)
	}
	log := stop()
	caughtUp := regexp.MustCompile(`msg="(store caught up|restore done)".* records=(\d+)`)
	matches := caughtUp.FindAllStringSubmatch(log, -1)
	if len(matches) == 0 {
		t.Fatalf("the restarted worker logged no catch-up:\n%s", log)
	}
	for _, m := range matches {
		if m[2] != "0" {
			t.Fatalf("the restarted worker restored %s records after a SIGTERM: %s\n%s", m[2], m[0], log)
		}
	}
}

// --memory-limit reaches the runtime; zero leaves it alone.
func TestMemoryLimitIsApplied(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	// Far above anything the tests use, so it changes nothing else.
	applyMemoryLimit(&settings{memoryLimit: 1 << 50})
	if got := debug.SetMemoryLimit(-1); got != 1<<50 {
		t.Fatalf("memory limit %d, want %d", got, int64(1)<<50)
	}
	applyMemoryLimit(&settings{})
	if got := debug.SetMemoryLimit(-1); got != 1<<50 {
		t.Fatalf("zero changed a memory limit already set to %d", got)
	}
	// No limit set and no GOMEMLIMIT: zero derives it from the budget.
	if _, env := os.LookupEnv("GOMEMLIMIT"); !env {
		debug.SetMemoryLimit(math.MaxInt64)
		applyMemoryLimit(&settings{cfg: topology.Config{MemoryBudget: 1 << 40}})
		if got, want := debug.SetMemoryLimit(-1), int64(3<<38); got != want {
			t.Fatalf("derived memory limit %d, want %d (budget less 1/8 cache and 1/8 memtables)", got, want)
		}
	}
}
