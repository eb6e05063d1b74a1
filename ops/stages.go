package ops

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kcqrs/kcqrs/topology"
)

// Stage labels of kcqrs_command_stage_seconds, in the order a command
// passes them. The stages after the commit (the reply becoming visible to
// the client's read_committed consumer, the client receiving it) happen in
// the client; kcqrs-bench measures them.
const (
	StageFetch  = "fetch"  // record timestamp -> polled by the processor
	StageDecide = "decide" // polled -> handled (decided, outputs produced)
	StageCommit = "commit" // handled -> its transaction committed
)

// stageHistogram is kcqrs_command_stage_seconds.
func newStageHistogram() *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "kcqrs_command_stage_seconds",
		Help: "Per-stage latency of committed commands: fetch (record timestamp to polled by the processor; " +
			"the producer's clock), decide (polled to handled), commit (handled to its transaction committed). " +
			"Their sum is kcqrs_command_reply_latency_seconds.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
	}, []string{"stage"})
	for _, s := range []string{StageFetch, StageDecide, StageCommit} {
		h.WithLabelValues(s)
	}
	return h
}

// CommandStages implements topology.StageObserver.
func (m *Metrics) CommandStages(stages []topology.CommandStages) {
	fetch, decide, commit := m.stages.WithLabelValues(StageFetch), m.stages.WithLabelValues(StageDecide), m.stages.WithLabelValues(StageCommit)
	for _, s := range stages {
		fetch.Observe(max(s.Fetched.Sub(s.Produced).Seconds(), 0))
		decide.Observe(s.Decided.Sub(s.Fetched).Seconds())
		commit.Observe(s.Committed.Sub(s.Decided).Seconds())
	}
}

var _ topology.StageObserver = (*Metrics)(nil)
