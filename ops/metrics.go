package ops

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// PartitionState is what a worker reports about one partition it holds,
// as an active owner or as a standby.
type PartitionState struct {
	Partition int32
	Role      string // "active" or "standby"
	Restored  int64  // changelog records (offsets) read so far
	Total     int64  // changelog records (offsets) to read to be caught up
	Lag       int64  // offsets a standby is behind the changelog's end
	Ready     bool   // restored and processing (active) or tailing (standby)
}

// MetricsOptions configures Metrics.
type MetricsOptions struct {
	// Registerer receives the collectors. Required.
	Registerer prometheus.Registerer
	// Partitions, when set, is asked at every scrape for the partitions the
	// worker holds (readiness, restore progress, standby lag).
	Partitions func() []PartitionState
	// StoreDirs, when set, is asked at every scrape for the store directory
	// of each held partition, to report their size on disk.
	StoreDirs func() map[int32]string
	// Stats, when set, is asked at every scrape for the processor's
	// counters that no Observer call reports (state rebuilds, hanging
	// transactions).
	Stats func() topology.Stats
	// Now is the clock for the command-to-reply latency. Default time.Now.
	Now func() time.Time
	// Unreadable, when set, is asked at every scrape for the partitions held
	// back by data the worker cannot read (Processor.Unreadable).
	Unreadable func() []topology.Unreadable
}

// Metrics records a processor's work as Prometheus metrics. Work done in a
// transaction is counted when it commits; an aborted transaction's work is
// dropped, since it comes again.
type Metrics struct {
	now func() time.Time

	commands      *prometheus.CounterVec
	latency       prometheus.Histogram
	batchSize     prometheus.Histogram
	commitSeconds prometheus.Histogram
	transactions  *prometheus.CounterVec
	deadLetters   prometheus.Counter
	lag           *prometheus.GaugeVec
	restoreLeft   *prometheus.GaugeVec
	dropped       prometheus.Counter
	isolated      *prometheus.CounterVec
	backoffs      prometheus.Counter
	consecAborts  prometheus.Gauge
	stages        *prometheus.HistogramVec // stages.go

	mu       sync.Mutex
	pending  []pendingReply
	pendDLQ  int
	restores map[int32]restoreState
}

type restoreState struct{ from, next, target int64 }

type pendingReply struct {
	status    wire.Status
	duplicate bool
	at        time.Time
}

var (
	_ topology.Observer      = (*Metrics)(nil)
	_ topology.AbortObserver = (*Metrics)(nil)
)

// NewMetrics registers the processor metrics and returns the observer to
// set as topology.Config.Observer.
func NewMetrics(o MetricsOptions) *Metrics {
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Metrics{
		now:      o.Now,
		restores: map[int32]restoreState{},
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kcqrs_commands_total",
			Help: "Commands answered in committed transactions, by reply status (outcome); duplicate=true for retries answered from the dedupe window.",
		}, []string{"outcome", "duplicate"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kcqrs_command_reply_latency_seconds",
			Help:    "Time from a command record's timestamp to the commit of the transaction holding its reply.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kcqrs_transaction_commands",
			Help:    "Command records per transaction (batch size), committed or aborted.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kcqrs_transaction_commit_seconds",
			Help:    "Time to end (commit) a transaction, offsets included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kcqrs_transactions_total",
			Help: "Transactions ended, by result (committed or aborted).",
		}, []string{"result"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kcqrs_dead_letters_total",
			Help: "Commands copied to the dead-letter topic in committed transactions.",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kcqrs_consumer_lag",
			Help: "Command records behind the last stable offset, per partition, as of the last poll.",
		}, []string{"partition"}),
		restoreLeft: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kcqrs_restore_remaining_offsets",
			Help: "Changelog offsets still to read before a partition's store is caught up (0 when restored).",
		}, []string{"partition"}),
		backoffs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kcqrs_abort_backoffs_total",
			Help: "Waits of the run loop before retrying after consecutive aborted transactions.",
		}),
		consecAborts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kcqrs_consecutive_aborts",
			Help: "Transactions aborted in a row (0 once one commits).",
		}),
	}
	for _, r := range []string{"committed", "aborted"} {
		m.transactions.WithLabelValues(r)
	}
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kcqrs_replies_dropped_total",
		Help: "Replies not sent because their (allowed) reply topic does not exist or may not be written, or the reply cannot fit in a record; counted when decided.",
	})
	m.isolated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kcqrs_commands_isolated_total",
		Help: "Commands answered without effect and dead-lettered alone, by code: bad_reply_address (a reply topic or partition refused), output_too_large (an output would not fit in a record); counted when decided.",
	}, []string{"code"})
	for _, c := range []string{topology.CodeBadReplyAddress, topology.CodeOutputTooLarge} {
		m.isolated.WithLabelValues(c)
	}
	m.stages = newStageHistogram()
	o.Registerer.MustRegister(m.stages)
	o.Registerer.MustRegister(m.commands, m.latency, m.batchSize, m.commitSeconds, m.transactions,
		m.deadLetters, m.lag, m.restoreLeft, m.dropped, m.isolated, m.backoffs, m.consecAborts, &scrapeCollector{o: o})
	return m
}

// Replied implements topology.Observer.
func (m *Metrics) Replied(_ int32, _ int64, status wire.Status, duplicate bool, recordTime time.Time) {
	m.mu.Lock()
	m.pending = append(m.pending, pendingReply{status, duplicate, recordTime})
	m.mu.Unlock()
}

// DeadLettered implements topology.Observer.
func (m *Metrics) DeadLettered(int32) {
	m.mu.Lock()
	m.pendDLQ++
	m.mu.Unlock()
}

// ReplyDropped implements topology.ReplyDropObserver.
func (m *Metrics) ReplyDropped(int32, string, string) { m.dropped.Inc() }

// CommandIsolated implements topology.IsolationObserver.
func (m *Metrics) CommandIsolated(_ int32, code string) { m.isolated.WithLabelValues(code).Inc() }

var (
	_ topology.ReplyDropObserver = (*Metrics)(nil)
	_ topology.IsolationObserver = (*Metrics)(nil)
)

// TransactionEnded implements topology.Observer.
func (m *Metrics) TransactionEnded(records int, committed bool, took time.Duration) {
	m.mu.Lock()
	pending, dlq := m.pending, m.pendDLQ
	m.pending, m.pendDLQ = nil, 0
	m.mu.Unlock()
	m.batchSize.Observe(float64(records))
	if !committed {
		m.transactions.WithLabelValues("aborted").Inc()
		m.consecAborts.Inc()
		return
	}
	m.consecAborts.Set(0)
	m.transactions.WithLabelValues("committed").Inc()
	m.commitSeconds.Observe(took.Seconds())
	now := m.now()
	for _, r := range pending {
		m.commands.WithLabelValues(strings.ToLower(string(r.status)), strconv.FormatBool(r.duplicate)).Inc()
		if !r.at.IsZero() {
			m.latency.Observe(max(0, now.Sub(r.at).Seconds()))
		}
	}
	m.deadLetters.Add(float64(dlq))
}

// AbortBackoff implements topology.AbortObserver.
func (m *Metrics) AbortBackoff(int, time.Duration) { m.backoffs.Inc() }

// Fetched implements topology.Observer.
func (m *Metrics) Fetched(partition int32, nextOffset, lastStable int64) {
	m.lag.WithLabelValues(strconv.Itoa(int(partition))).Set(float64(max(0, lastStable-nextOffset)))
}

// RestoreProgress implements topology.Observer.
func (m *Metrics) RestoreProgress(partition int32, next, target int64) {
	m.mu.Lock()
	r, ok := m.restores[partition]
	if !ok || r.target != target || next < r.next {
		r = restoreState{from: next}
	}
	r.next, r.target = next, target
	m.restores[partition] = r
	m.mu.Unlock()
	m.restoreLeft.WithLabelValues(strconv.Itoa(int(partition))).Set(float64(max(0, target-next)))
}

// scrapeCollector reports what is read at scrape time: partition states
// and store sizes.
type scrapeCollector struct{ o MetricsOptions }

var (
	descReady = prometheus.NewDesc("kcqrs_partition_ready",
		"1 when the partition is restored and processing (active) or tailing (standby).", []string{"partition", "role"}, nil)
	descRestored = prometheus.NewDesc("kcqrs_restore_progress_ratio",
		"Share of the changelog read by the partition's restore (1 when caught up).", []string{"partition", "role"}, nil)
	descStandbyLag = prometheus.NewDesc("kcqrs_standby_lag",
		"Changelog offsets a standby replica is behind.", []string{"partition"}, nil)
	descStoreBytes = prometheus.NewDesc("kcqrs_store_bytes",
		"Size on disk of a partition's snapshot store.", []string{"partition"}, nil)
	descStateRebuilds = prometheus.NewDesc("kcqrs_state_rebuilds_total",
		"Aggregates whose snapshot state could not be read with the current schemas and was rebuilt from the events topic.", nil, nil)
	descHanging = prometheus.NewDesc("kcqrs_hanging_transactions_total",
		"Command partitions found blocked by a transaction open longer than the hanging-transaction threshold.", nil, nil)
	descUnreadable = prometheus.NewDesc("kcqrs_partition_unreadable",
		"1 per owned partition held back by data this build cannot read, and per writer schema fingerprint it lacks (\"\" when the data is not a fingerprint problem); its commands wait.", []string{"partition", "fingerprint"}, nil)
	descUnreadableDeferrals = prometheus.NewDesc("kcqrs_unreadable_deferrals_total",
		"Times a partition was held back, or kept back after a check, because it holds data this build cannot read.", nil, nil)
)

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descReady
	ch <- descRestored
	ch <- descStandbyLag
	ch <- descStoreBytes
	ch <- descStateRebuilds
	ch <- descHanging
	ch <- descUnreadable
	ch <- descUnreadableDeferrals
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	if c.o.Partitions != nil {
		for _, s := range c.o.Partitions() {
			p := strconv.Itoa(int(s.Partition))
			ready := 0.0
			if s.Ready {
				ready = 1
			}
			ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready, p, s.Role)
			ratio := 1.0
			if s.Total > 0 {
				ratio = min(1, float64(s.Restored)/float64(s.Total))
			}
			ch <- prometheus.MustNewConstMetric(descRestored, prometheus.GaugeValue, ratio, p, s.Role)
			if s.Role == "standby" {
				ch <- prometheus.MustNewConstMetric(descStandbyLag, prometheus.GaugeValue, float64(s.Lag), p)
			}
		}
	}
	if c.o.Stats != nil {
		st := c.o.Stats()
		ch <- prometheus.MustNewConstMetric(descStateRebuilds, prometheus.CounterValue, float64(st.StateRebuilds))
		ch <- prometheus.MustNewConstMetric(descHanging, prometheus.CounterValue, float64(st.HangingTransactions))
		ch <- prometheus.MustNewConstMetric(descUnreadableDeferrals, prometheus.CounterValue, float64(st.UnreadableDeferrals))
	}
	if c.o.Unreadable != nil {
		for _, u := range c.o.Unreadable() {
			p := strconv.Itoa(int(u.Partition))
			if len(u.Fingerprints) == 0 {
				ch <- prometheus.MustNewConstMetric(descUnreadable, prometheus.GaugeValue, 1, p, "")
			}
			for _, fp := range u.Fingerprints {
				ch <- prometheus.MustNewConstMetric(descUnreadable, prometheus.GaugeValue, 1, p, fmt.Sprintf("%#016x", fp))
			}
		}
	}
	if c.o.StoreDirs != nil {
		for part, dir := range c.o.StoreDirs() {
			ch <- prometheus.MustNewConstMetric(descStoreBytes, prometheus.GaugeValue, float64(DirSize(dir)), strconv.Itoa(int(part)))
		}
	}
}

// DirSize is the total size of the regular files under dir (0 when it
// cannot be read).
func DirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// Restore reports the latest restore of partition seen by RestoreProgress:
// offsets read and offsets to read in all; ok is false if none was seen.
func (m *Metrics) Restore(partition int32) (restored, total int64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.restores[partition]
	return min(r.next, r.target) - r.from, r.target - r.from, ok
}
