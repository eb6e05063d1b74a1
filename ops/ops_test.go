package ops_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kcqrs/kcqrs/ops"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestEndpoints(t *testing.T) {
	var ready atomic.Bool
	h := ops.Handler(ops.Options{Gatherer: prometheus.NewRegistry(), Ready: ops.ReadyFunc(ready.Load)})
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, _ := get(t, h, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before ready: %d", code)
	}
	ready.Store(true)
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Fatalf("/readyz when ready: %d", code)
	}
	if code, _ := get(t, h, "/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("pprof served without --pprof: %d", code)
	}
	if code, _ := get(t, ops.Handler(ops.Options{Pprof: true}), "/debug/pprof/cmdline"); code != 200 {
		t.Fatalf("pprof with Pprof: %d", code)
	}
}

func TestDefaultAddrIsLoopback(t *testing.T) {
	s, err := ops.Start(ops.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(ops.DefaultAddr, "127.0.0.1:") || !strings.HasPrefix(s.Addr().String(), "127.0.0.1:") {
		t.Fatalf("default %s, listening on %s", ops.DefaultAddr, s.Addr())
	}
	resp, err := http.Get("http://" + s.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz %d", resp.StatusCode)
	}
}

// TestMetricsCountCommittedWorkOnly: an aborted transaction's replies and
// dead letters are not counted (its batch comes again); a committed one's
// are, with their latency from the record's timestamp.
func TestMetricsCountCommittedWorkOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	now := time.Unix(1000, 0)
	m := ops.NewMetrics(ops.MetricsOptions{Registerer: reg, Now: func() time.Time { return now }})
	m.Replied(0, 5, wire.StatusAccepted, false, now.Add(-2*time.Second))
	m.DeadLettered(0)
	m.TransactionEnded(1, false, time.Millisecond)
	m.Replied(0, 5, wire.StatusAccepted, false, now.Add(-time.Second))
	m.Replied(0, 6, wire.StatusAccepted, true, now.Add(-time.Second))
	m.DeadLettered(0)
	m.TransactionEnded(2, true, time.Millisecond)
	m.Fetched(3, 10, 25)
	m.RestoreProgress(1, 0, 100)
	m.RestoreProgress(1, 40, 100)

	got := gather(t, reg)
	for series, want := range map[string]float64{
		`kcqrs_commands_total{duplicate="false",outcome="accepted"}`: 1,
		`kcqrs_commands_total{duplicate="true",outcome="accepted"}`:  1,
		`kcqrs_dead_letters_total`:                                   1,
		`kcqrs_transactions_total{result="aborted"}`:                 1,
		`kcqrs_transactions_total{result="committed"}`:               1,
		`kcqrs_consumer_lag{partition="3"}`:                          15,
		`kcqrs_restore_remaining_offsets{partition="1"}`:             60,
		`kcqrs_command_reply_latency_seconds_count`:                  2,
		`kcqrs_command_reply_latency_seconds_sum`:                    2,
		`kcqrs_transaction_commands_count`:                           2,
		`kcqrs_transaction_commit_seconds_count`:                     1,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	if restored, total, ok := m.Restore(1); !ok || restored != 40 || total != 100 {
		t.Fatalf("restore progress %d/%d %v", restored, total, ok)
	}
}

// gather returns every sample as "name{label="value",...}" -> value
// (histograms as _count and _sum).
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			key, lk := mf.GetName(), ""
			if len(labels) > 0 {
				lk = "{" + strings.Join(labels, ",") + "}"
				key += lk
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[mf.GetName()+"_count"+lk] = float64(m.GetHistogram().GetSampleCount())
				out[mf.GetName()+"_sum"+lk] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// TestPprofCmdlineHidesSecrets: with --pprof, /debug/pprof/cmdline must not
// show a secret passed as a flag (--sasl-password x, --sasl-password=x).
func TestPprofCmdlineHidesSecrets(t *testing.T) {
	saved := os.Args
	defer func() { os.Args = saved }()
	os.Args = []string{"processor", "--sasl-password", "hunter2", "--tls-key-password=sesame", "--brokers", "b:9092", "--sasl-user", "worker"}
	code, body := get(t, ops.Handler(ops.Options{Pprof: true}), "/debug/pprof/cmdline")
	if code != 200 {
		t.Fatalf("/debug/pprof/cmdline: %d", code)
	}
	if strings.Contains(body, "hunter2") || strings.Contains(body, "sesame") {
		t.Fatalf("cmdline shows a secret: %q", body)
	}
	if !strings.Contains(body, "b:9092") || !strings.Contains(body, "worker") {
		t.Fatalf("cmdline lost the harmless flags: %q", body)
	}
}

// TestProblemIsReported: while the process has a problem (it cannot log in,
// say), /healthz still answers 200 and says what is wrong, and /readyz
// answers 503 with the problem.
func TestProblemIsReported(t *testing.T) {
	var problem atomic.Value
	problem.Store("")
	h := ops.Handler(ops.Options{Gatherer: prometheus.NewRegistry(), Problem: func() string { return problem.Load().(string) }})
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Fatalf("/readyz without a problem: %d", code)
	}
	problem.Store("kafka: SASL authentication failed")
	code, body := get(t, h, "/healthz")
	if code != 200 || !strings.Contains(body, "SASL authentication failed") {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	code, body = get(t, h, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "SASL authentication failed") {
		t.Fatalf("/readyz: %d %q", code, body)
	}
}

// TestStateRebuildsMetric: Stats.StateRebuilds is exported as a counter.
func TestStateRebuildsMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	ops.NewMetrics(ops.MetricsOptions{Registerer: reg, Stats: func() topology.Stats { return topology.Stats{StateRebuilds: 3, HangingTransactions: 2} }})
	_, body := get(t, ops.Handler(ops.Options{Gatherer: reg}), "/metrics")
	for _, want := range []string{"kcqrs_state_rebuilds_total 3", "kcqrs_hanging_transactions_total 2"} {
		if !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

// TestUnreadableMetrics: partitions held back by data the worker cannot
// read are exported with the schema fingerprints it lacks.
func TestUnreadableMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ops.NewMetrics(ops.MetricsOptions{Registerer: reg,
		Stats: func() topology.Stats { return topology.Stats{UnreadableDeferrals: 5} },
		Unreadable: func() []topology.Unreadable {
			return []topology.Unreadable{{Partition: 0, Fingerprints: []uint64{0x203c9776b6de7062, 1}}, {Partition: 3}}
		}})
	_, body := get(t, ops.Handler(ops.Options{Gatherer: reg}), "/metrics")
	for _, want := range []string{"kcqrs_unreadable_deferrals_total 5",
		`kcqrs_partition_unreadable{fingerprint="0x203c9776b6de7062",partition="0"} 1`,
		`kcqrs_partition_unreadable{fingerprint="0x0000000000000001",partition="0"} 1`,
		`kcqrs_partition_unreadable{fingerprint="",partition="3"} 1`} {
		if !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

// TestStageHistograms: each committed command's stages land in
// kcqrs_command_stage_seconds by stage, as the differences of its times; a
// producer clock ahead of the processor's counts as zero, not negative.
func TestStageHistograms(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := ops.NewMetrics(ops.MetricsOptions{Registerer: reg})
	var obs topology.Observer = m
	so, ok := obs.(topology.StageObserver)
	if !ok {
		t.Fatal("ops.Metrics is not a topology.StageObserver")
	}
	t0 := time.Unix(1000, 0)
	so.CommandStages([]topology.CommandStages{
		{Partition: 0, Offset: 1, Produced: t0, Fetched: t0.Add(2 * time.Second), Decided: t0.Add(2500 * time.Millisecond), Committed: t0.Add(4 * time.Second)},
		{Partition: 1, Offset: 7, Produced: t0.Add(time.Second), Fetched: t0, Decided: t0.Add(time.Second), Committed: t0.Add(2 * time.Second)},
	})
	got := gather(t, reg)
	for series, want := range map[string]float64{
		`kcqrs_command_stage_seconds_count{stage="fetch"}`:  2,
		`kcqrs_command_stage_seconds_sum{stage="fetch"}`:    2,
		`kcqrs_command_stage_seconds_count{stage="decide"}`: 2,
		`kcqrs_command_stage_seconds_sum{stage="decide"}`:   1.5,
		`kcqrs_command_stage_seconds_count{stage="commit"}`: 2,
		`kcqrs_command_stage_seconds_sum{stage="commit"}`:   2.5,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
}
