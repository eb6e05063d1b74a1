package console

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/internal/examples/examplestest"
	"github.com/kcqrs/kcqrs/ops"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// workload is a processor on the embedded broker (with its real /metrics)
// after a small workload: an account with a deposit and a rejected
// withdrawal, and one command that is not Avro (a dead letter).
type workload struct {
	h          *topologytest.Harness
	account    string
	deadID     string // command id of the dead letter
	opsAddr    string
	partitions int32
}

func newWorkload(t *testing.T) *workload { return newWorkloadStandbys(t, 0) }

// newWorkloadStandbys is newWorkload with workers keeping standbys
// standby copies of each partition.
func newWorkloadStandbys(t *testing.T, standbys int) *workload {
	t.Helper()
	w := &workload{h: examplestest.Harness(t, 4), account: "acc-console-1", partitions: 4}
	w.opsAddr = w.startWorker(t, "worker-a", standbys)

	send := func(cmd client.Command, want wire.Status) {
		t.Helper()
		if rep := w.h.Send(cmd); rep.Status != want {
			t.Fatalf("%s: %s %s %s, want %s", cmd.Type, rep.Status, rep.Code, rep.Message, want)
		}
	}
	send(client.Command{AggregateType: "account", AggregateID: w.account, Type: "OpenAccount", JSON: []byte(`{"owner":"Alice","currency":"EUR"}`)}, wire.StatusAccepted)
	send(client.Command{AggregateType: "account", AggregateID: w.account, Type: "Deposit", JSON: []byte(`{"amount":4200}`)}, wire.StatusAccepted)
	send(client.Command{AggregateType: "account", AggregateID: w.account, Type: "Withdraw", JSON: []byte(`{"amount":99999}`)}, wire.StatusRejected)
	w.deadID = client.NewID()
	send(client.Command{AggregateType: "account", AggregateID: w.account, Type: "Deposit", ID: w.deadID, Avro: []byte("this is not avro")}, wire.StatusInvalid)
	return w
}

// startWorker starts a processor with its real metrics served on a free
// port (as cmd/processor's ops endpoints), and returns that address.
func (w *workload) startWorker(t *testing.T, name string, standbys int) string {
	t.Helper()
	promReg := prometheus.NewRegistry()
	var proc atomic.Pointer[topology.Processor]
	metrics := ops.NewMetrics(ops.MetricsOptions{Registerer: promReg, Partitions: func() []ops.PartitionState {
		p := proc.Load()
		if p == nil {
			return nil
		}
		var out []ops.PartitionState
		for _, ps := range p.PartitionStates() {
			out = append(out, ops.PartitionState{Partition: ps.Partition, Role: string(ps.Role), Restored: ps.Restored, Total: ps.Total, Lag: ps.Lag, Ready: ps.Ready})
		}
		return out
	}})
	r := w.h.StartProcessor(name, "", func(c *topology.Config) { c.Observer, c.Standbys = metrics, standbys })
	proc.Store(r.Processor)
	srv := httptest.NewServer(ops.Handler(ops.Options{Gatherer: promReg, Ready: ops.ReadyFunc(r.Ready)}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// console is a console on the workload's broker.
func (w *workload) console(t *testing.T, mutate ...func(*Options)) *Console {
	t.Helper()
	o := Options{ClientOpts: []kgo.Opt{kgo.SeedBrokers(w.h.Brokers...)}, Processor: topology.Config{Partitions: w.partitions},
		Registry: w.h.Registry, OpsAddrs: []string{w.opsAddr}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mutate {
		m(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// eventually polls cond (generous deadline: the machine is shared) and
// fails with the last message it gave.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// get serves one request through the console's handler.
func get(t *testing.T, h http.Handler, method, path string, form string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	var body io.Reader
	if form != "" {
		body = strings.NewReader(form)
	}
	req := httptest.NewRequestWithContext(context.Background(), method, path, body)
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String(), rec.Header()
}

func newWorkloadRegistry(t *testing.T) *topology.Registry {
	t.Helper()
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// startSaga runs the transfer saga (package saga) on the workload's
// broker, so that its group is there to be seen.
func (w *workload) startSaga(t *testing.T) {
	t.Helper()
	sg, err := saga.New(saga.Config{Brokers: w.h.Brokers, InstanceID: "saga-0", SigningKey: []byte("console-test-key"), Logger: w.h.Base.Logger}, w.h.Registry)
	if err != nil {
		t.Fatal(err)
	}
	topologytest.RunUntilEnd(t, "saga", sg.Run)
}
