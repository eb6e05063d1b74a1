package bench

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/topology"
)

// stageRecorder is the latency phase's processor observer: it keeps every
// committed command's stages (topology.StageObserver) while on.
type stageRecorder struct {
	topology.NopObserver
	on     atomic.Bool
	mu     sync.Mutex
	stages map[stageKey]topology.CommandStages
}

type stageKey struct {
	partition int32
	offset    int64
}

func newStageRecorder() *stageRecorder {
	return &stageRecorder{stages: map[stageKey]topology.CommandStages{}}
}

// CommandStages implements topology.StageObserver.
func (s *stageRecorder) CommandStages(stages []topology.CommandStages) {
	if !s.on.Load() {
		return
	}
	s.mu.Lock()
	for _, c := range stages {
		s.stages[stageKey{c.Partition, c.Offset}] = c
	}
	s.mu.Unlock()
}

// start forgets what was recorded and records from now on; stop ends it.
func (s *stageRecorder) start() {
	s.mu.Lock()
	clear(s.stages)
	s.mu.Unlock()
	s.on.Store(true)
}

func (s *stageRecorder) stop() { s.on.Store(false) }

func (s *stageRecorder) get(partition int32, offset int64) (topology.CommandStages, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.stages[stageKey{partition, offset}]
	return c, ok
}

// The stages of a command, in order; their durations add up to the
// command-to-reply latency.
var stageNames = []string{
	"send",    // scheduled -> command record timestamp (sender and client)
	"fetch",   // record timestamp -> polled by the processor
	"decide",  // polled -> decided, outputs produced
	"commit",  // decided -> transaction committed
	"reply",   // committed -> the client's read_committed reply consumer polled it
	"deliver", // polled -> Send returned to its caller
}

// sample is one answered command: its total latency and its stages.
type sample struct {
	since  time.Duration // scheduled, from the start of the run
	total  time.Duration
	stages [6]time.Duration
}

// newSample joins the client's trace and the processor's stages of one
// command scheduled at; ok=false when the processor's stages are missing.
func newSample(start, at time.Time, tr client.Trace, ps topology.CommandStages, ok bool) (sample, bool) {
	if !ok {
		return sample{}, false
	}
	return sample{
		since: at.Sub(start),
		total: tr.Received.Sub(at),
		stages: [6]time.Duration{
			tr.Sent.Sub(at), ps.Fetched.Sub(tr.Sent), ps.Decided.Sub(ps.Fetched),
			ps.Committed.Sub(ps.Decided), tr.Polled.Sub(ps.Committed), tr.Received.Sub(tr.Polled),
		},
	}, true
}

// stageBreakdown summarizes samples: per stage its p50 and p99 over every
// command, and its median over the slowest 1% (the tail: which stage the
// slow commands spent their time in).
type stageBreakdown struct {
	joined, tail int
	p50, p99     [6]time.Duration
	tailMedian   [6]time.Duration
	// when the slowest 1% were scheduled, from the start of the run:
	// first, median, last (a stall is one cluster, a start-up cost sits
	// at the beginning).
	tailWhen [3]time.Duration
}

func breakdown(samples []sample) stageBreakdown {
	var b stageBreakdown
	b.joined = len(samples)
	if len(samples) == 0 {
		return b
	}
	slices.SortFunc(samples, func(x, y sample) int { return int(x.total - y.total) })
	tail := samples[min(int(0.99*float64(len(samples))), len(samples)-1):]
	b.tail = len(tail)
	when := make([]time.Duration, len(tail))
	for j, s := range tail {
		when[j] = s.since
	}
	slices.Sort(when)
	b.tailWhen = [3]time.Duration{when[0], percentile(when, 0.5), when[len(when)-1]}
	for i := range stageNames {
		all := make([]time.Duration, len(samples))
		for j, s := range samples {
			all[j] = s.stages[i]
		}
		slices.Sort(all)
		b.p50[i], b.p99[i] = percentile(all, 0.5), percentile(all, 0.99)
		t := make([]time.Duration, len(tail))
		for j, s := range tail {
			t[j] = s.stages[i]
		}
		slices.Sort(t)
		b.tailMedian[i] = percentile(t, 0.5)
	}
	return b
}

func (b stageBreakdown) String() string {
	if b.joined == 0 {
		return "no command joined with the processor's stages"
	}
	var parts []string
	for i, n := range stageNames {
		parts = append(parts, fmt.Sprintf("%s %s/%s/%s", n, ms(b.p50[i]), ms(b.p99[i]), ms(b.tailMedian[i])))
	}
	return strings.Join(parts, "; ") + fmt.Sprintf("; the slowest 1%% were sent %.1f s to %.1f s into the run (median %.1f s)",
		b.tailWhen[0].Seconds(), b.tailWhen[2].Seconds(), b.tailWhen[1].Seconds())
}

// stallWatch measures how late a goroutine that sleeps 5ms wakes up: a
// process-wide stall (CPU starvation by other processes, a GC pause, the
// scheduler) delays it, a stall inside one stage does not. It tells the
// two apart in the latency breakdown.
type stallWatch struct {
	worst time.Duration // the latest wake-up
	at    time.Duration // when it happened, from start
	over  time.Duration // total lateness over 10ms
	done  chan struct{}
	quit  chan struct{}
	// the process's GC and CPU over the run
	gc0, gc1   runtime.MemStats
	cpu0, cpu1 time.Duration
	wall       time.Duration
	start      time.Time
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func watchStalls(start time.Time) *stallWatch {
	s := &stallWatch{done: make(chan struct{}), quit: make(chan struct{}), start: start}
	runtime.ReadMemStats(&s.gc0)
	s.cpu0 = cpuTime()
	go func() {
		defer close(s.done)
		const nap = 5 * time.Millisecond
		for {
			select {
			case <-s.quit:
				return
			default:
			}
			t := time.Now()
			time.Sleep(nap)
			late := time.Since(t) - nap
			if late > s.worst {
				s.worst, s.at = late, t.Sub(start)
			}
			if late > 10*time.Millisecond {
				s.over += late
			}
		}
	}()
	return s
}

func (s *stallWatch) stop() {
	close(s.quit)
	<-s.done
	s.wall = time.Since(s.start)
	s.cpu1 = cpuTime()
	runtime.ReadMemStats(&s.gc1)
}

// maxPause is the longest GC stop-the-world pause of the run (of the last
// 256 collections).
func (s *stallWatch) maxPause() time.Duration {
	var worst uint64
	for i := s.gc0.NumGC; i < s.gc1.NumGC && s.gc1.NumGC-i <= 256; i++ {
		worst = max(worst, s.gc1.PauseNs[i%256])
	}
	return time.Duration(worst)
}

func (s *stallWatch) String() string {
	return fmt.Sprintf("process stalls (a 5ms sleep woke up late): worst %s at %.1f s, %s in total over 10ms; "+
		"%d GCs, longest pause %s; the process used %.2f of %d CPUs (machine load average %s)",
		ms(s.worst), s.at.Seconds(), ms(s.over), s.gc1.NumGC-s.gc0.NumGC, ms(s.maxPause()),
		float64(s.cpu1-s.cpu0)/float64(max(s.wall, 1)), runtime.NumCPU(), loadAvg())
}

// loadAvg is the machine's 1-minute load average, "n/a" where unknown.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "n/a"
}
