package main

import (
	"context"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/projection"
)

// partitionLag is one group's standing on one partition of its input.
type partitionLag struct {
	version                  int
	group, topic             string
	partition                int32
	committed, position, lso int64
	lag                      int64
}

// monitor reads the groups' offsets every interval (scrapes and /readyz
// only read its last snapshot, so they cost no broker round trip) and
// exports them with the projector's counters.
type monitor struct {
	cl  *kgo.Client
	adm *kadm.Client
	svc *projection.Service
	cfg projection.ServiceConfig
	log *slog.Logger

	mu       sync.Mutex
	lags     []partitionLag
	caught   map[int]bool
	isReady  atomic.Bool // latched: once caught up, ready until the process ends
	failures atomic.Int64

	lagDesc, committedDesc, stableDesc, caughtDesc, readyDesc, activeDesc, failDesc, recordsDesc, eventsDesc *prometheus.Desc
}

func newMonitor(cl *kgo.Client, svc *projection.Service, cfg projection.ServiceConfig, log *slog.Logger) *monitor {
	part := []string{"version", "group", "topic", "partition"}
	return &monitor{
		cl: cl, adm: kadm.NewClient(cl), svc: svc, cfg: cfg, log: log, caught: map[int]bool{},
		lagDesc:       prometheus.NewDesc("kcqrs_projector_lag", "Offsets a read model's group has not committed yet on a partition of its input: last stable offset minus the committed offset (on the transactional events topic a group that read everything still shows about 1, the trailing commit marker; see kcqrs_projector_caught_up).", part, nil),
		committedDesc: prometheus.NewDesc("kcqrs_projector_committed_offset", "Offset a read model's group committed on a partition of its input (-1: none yet).", part, nil),
		stableDesc:    prometheus.NewDesc("kcqrs_projector_stable_offset", "Last stable offset (end of the committed records) of a partition of a group's input.", part, nil),
		caughtDesc:    prometheus.NewDesc("kcqrs_projector_caught_up", "1 when every group of the version has read every committed record of its input and, for a served version, its views show what the groups wrote (at the last check; the same definition as caughtUp in /v1/status).", []string{"version"}, nil),
		readyDesc:     prometheus.NewDesc("kcqrs_projector_ready", "1 once the served (or, without a query API, the built) version has caught up; /readyz answers 200 from then on.", nil, nil),
		activeDesc:    prometheus.NewDesc("kcqrs_projector_active_version", "Version of the read models the query API answers from.", nil, nil),
		failDesc:      prometheus.NewDesc("kcqrs_projector_progress_check_failures_total", "Offset reads (lag, catch-up) that failed; the last good values stay exported.", nil, nil),
		recordsDesc:   prometheus.NewDesc("kcqrs_projector_records_total", "Records a read model's group handled since start, by outcome: applied (changed the entry), stale (redelivered, at or below the version held), gap (applied after a version gap; also dead-lettered), dead_letter (written to <group>-dlq).", []string{"group", "outcome"}, nil),
		eventsDesc:    prometheus.NewDesc("kcqrs_projector_events_total", "Records read from the events topic since start, other aggregates' included.", nil, nil),
	}
}

// versions are the versions whose groups the monitor watches: the one
// built here and the served ones.
func (m *monitor) versions() []int {
	seen := map[int]bool{}
	var out []int
	add := func(v int) {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if m.cfg.Project {
		add(m.cfg.Projection.Names.Version)
	}
	if !m.cfg.NoHTTP {
		if len(m.cfg.ServeVersions) == 0 {
			add(m.cfg.Projection.Names.Version)
		}
		for _, v := range m.cfg.ServeVersions {
			add(v)
		}
	}
	sort.Ints(out)
	return out
}

func (m *monitor) names(v int) projection.Names {
	n := m.cfg.Projection.Names
	n.Version = v
	return n
}

func (m *monitor) events() string {
	if m.cfg.Projection.EventsTopic == "" {
		return "events"
	}
	return m.cfg.Projection.EventsTopic
}

// run refreshes the snapshot every interval until ctx ends.
func (m *monitor) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, max(interval, 10*time.Second))
		m.refresh(rctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *monitor) fail(what string, err error) {
	m.failures.Add(1)
	m.log.Debug("projector progress check failed", "what", what, "err", err)
}

func (m *monitor) refresh(ctx context.Context) {
	type key struct {
		version int
		group   string
	}
	m.mu.Lock()
	prevCaught := m.caught
	prev := map[key][]partitionLag{}
	for _, l := range m.lags {
		prev[key{l.version, l.group}] = append(prev[key{l.version, l.group}], l)
	}
	m.mu.Unlock()
	var lags []partitionLag
	caught := map[int]bool{}
	for _, v := range m.versions() {
		n := m.names(v)
		inputs := []struct {
			group, topic string
		}{
			{string(n.AccountsGroup()), m.events()},
			{string(n.OwnersGroup()), string(n.ByOwnerTopic())},
			{string(n.TotalsGroup()), string(n.ByCurrencyTopic())},
		}
		for _, in := range inputs {
			pps, err := projection.GroupProgress(ctx, m.adm, in.group, in.topic)
			if err != nil {
				m.fail("group progress", err)
				lags = append(lags, prev[key{v, in.group}]...)
				continue
			}
			// Position and lag against the last stable offset: what a
			// read_committed consumer can read, not the high watermark.
			stable, err := m.adm.ListCommittedOffsets(ctx, in.topic)
			if err == nil {
				err = stable.Error()
			}
			if err != nil {
				m.fail("stable offsets", err)
			}
			for _, pp := range pps {
				pl := partitionLag{version: v, group: in.group, topic: in.topic, partition: pp.Partition,
					committed: pp.Committed, position: pp.Position(), lso: pp.End}
				if o, ok := stable.Lookup(in.topic, pp.Partition); ok && o.Err == nil {
					pl.lso = o.Offset
				}
				pl.lag = max(0, pl.lso-pl.position)
				lags = append(lags, pl)
			}
		}
		var served *projection.ReadModels // served: its views count too, as in /v1/status
		if m.svc.Server != nil {
			served = m.svc.Server.ReadModels(v)
		}
		ok, _, err := projection.VersionCaughtUp(ctx, m.cl, m.adm, n, m.events(), served)
		if err != nil {
			m.fail("catch-up", err)
			ok = prevCaught[v]
		}
		caught[v] = ok
	}
	m.mu.Lock()
	m.lags, m.caught = lags, caught
	m.mu.Unlock()
	if !m.isReady.Load() && m.readyNow(ctx, caught) {
		m.isReady.Store(true)
		m.log.Info("read models caught up: ready")
	}
}

// readyNow: the version queries go to has caught up and its views show
// what its groups wrote; without a query API, the built version has caught
// up.
func (m *monitor) readyNow(ctx context.Context, caught map[int]bool) bool {
	if m.svc.Server == nil {
		return caught[m.cfg.Projection.Names.Version]
	}
	rm := m.svc.Server.Active()
	if !caught[rm.Names.Version] {
		return false
	}
	ok, err := rm.TablesCaughtUp(ctx, m.adm)
	if err != nil {
		m.fail("views", err)
	}
	return ok
}

func (m *monitor) ready() bool { return m.isReady.Load() }

// Describe implements prometheus.Collector.
func (m *monitor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.lagDesc, m.committedDesc, m.stableDesc, m.caughtDesc, m.readyDesc, m.activeDesc, m.failDesc, m.recordsDesc, m.eventsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *monitor) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	lags, caught := m.lags, m.caught
	m.mu.Unlock()
	for _, l := range lags {
		labels := []string{strconv.Itoa(l.version), l.group, l.topic, strconv.Itoa(int(l.partition))}
		ch <- prometheus.MustNewConstMetric(m.lagDesc, prometheus.GaugeValue, float64(l.lag), labels...)
		ch <- prometheus.MustNewConstMetric(m.committedDesc, prometheus.GaugeValue, float64(l.committed), labels...)
		ch <- prometheus.MustNewConstMetric(m.stableDesc, prometheus.GaugeValue, float64(l.lso), labels...)
	}
	for v, ok := range caught {
		ch <- prometheus.MustNewConstMetric(m.caughtDesc, prometheus.GaugeValue, b2f(ok), strconv.Itoa(v))
	}
	ch <- prometheus.MustNewConstMetric(m.readyDesc, prometheus.GaugeValue, b2f(m.ready()))
	ch <- prometheus.MustNewConstMetric(m.failDesc, prometheus.CounterValue, float64(m.failures.Load()))
	if m.svc.Server != nil {
		ch <- prometheus.MustNewConstMetric(m.activeDesc, prometheus.GaugeValue, float64(m.svc.Server.Active().Names.Version))
	}
	if p := m.svc.Projector; p != nil {
		for g, s := range p.GroupStats() {
			for _, o := range []struct {
				outcome string
				n       int64
			}{{"applied", s.Applied}, {"stale", s.Stale}, {"gap", s.Gaps}, {"dead_letter", s.DeadLetters}} {
				ch <- prometheus.MustNewConstMetric(m.recordsDesc, prometheus.CounterValue, float64(o.n), g, o.outcome)
			}
		}
		ch <- prometheus.MustNewConstMetric(m.eventsDesc, prometheus.CounterValue, float64(p.Stats().Events))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
