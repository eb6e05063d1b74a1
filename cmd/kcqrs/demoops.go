package main

import (
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kcqrs/kcqrs/ops"
	"github.com/kcqrs/kcqrs/topology"
)

// demoOps gives the demo's processor the endpoints cmd/processor serves:
// /metrics (its processor metrics and the Go runtime's), /healthz and
// /readyz (ready once every owned partition is restored).
type demoOps struct {
	reg     *prometheus.Registry
	metrics *ops.Metrics
	proc    atomic.Pointer[topology.Processor]
}

// newDemoOps registers the metrics; set Observer() on the processor's
// config, then start the endpoints once the processor exists.
func newDemoOps() *demoOps {
	d := &demoOps{reg: prometheus.NewRegistry()}
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.metrics = ops.NewMetrics(ops.MetricsOptions{Registerer: d.reg, Partitions: func() []ops.PartitionState {
		p := d.proc.Load()
		if p == nil {
			return nil
		}
		var out []ops.PartitionState
		for _, ps := range p.PartitionStates() {
			out = append(out, ops.PartitionState{Partition: ps.Partition, Role: string(ps.Role), Restored: ps.Restored, Total: ps.Total, Lag: ps.Lag, Ready: ps.Ready})
		}
		return out
	}})
	return d
}

// Observer is the processor's observer (topology.Config.Observer).
func (d *demoOps) Observer() topology.Observer { return d.metrics }

// start serves the endpoints of proc on addr (and api, if set, under /v1/).
func (d *demoOps) start(addr string, proc *topology.Processor, log *slog.Logger, api ...http.Handler) (*ops.Server, error) {
	d.proc.Store(proc)
	o := ops.Options{Addr: addr, Gatherer: d.reg, Ready: ops.ReadyFunc(proc.Ready), Logger: log}
	if len(api) > 0 {
		o.API = api[0]
	}
	return ops.Start(o)
}
