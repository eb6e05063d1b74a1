package bench

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/topology"
)

// The restart and memory measurements need a processor in its own process:
// one to SIGKILL, and one whose peak RSS is its own (the embedded broker
// lives in the parent). The parent runs its own executable with "child".

// childMsg is one JSON line a child writes to stdout.
type childMsg struct {
	Restore  *topology.RestoreReport `json:"restore,omitempty"`
	Final    bool                    `json:"final,omitempty"`
	VmHWMKiB int64                   `json:"vmhwm_kib,omitempty"` // while running
	// StopVmHWMKiB is the peak including the clean stop.
	StopVmHWMKiB int64  `json:"stop_vmhwm_kib,omitempty"`
	Commands     int64  `json:"commands,omitempty"`
	Err          string `json:"err,omitempty"`
	// Event is a moment of the liveness measurement: "started" (the
	// process runs), "assigned" (its assignment changed to Parts),
	// "committed" (the first transaction committed after that change),
	// "restored" (a store caught up; Restore says which). At is when.
	Event string    `json:"event,omitempty"`
	Parts []int32   `json:"parts,omitempty"`
	At    time.Time `json:"at,omitzero"`
}

// peakRSSKiB is the process's peak resident set (VmHWM), in KiB.
func peakRSSKiB() int64 {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				f := strings.Fields(rest)
				if len(f) > 0 {
					if v, err := strconv.ParseInt(f[0], 10, 64); err == nil {
						return v
					}
				}
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		return ru.Maxrss // KiB on Linux
	}
	return 0
}

// RunChild runs one processor until SIGTERM/SIGINT, reporting every store
// catch-up and, at a clean stop, its peak RSS, as JSON lines on stdout.
func RunChild(args []string) error {
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	brokers := fs.String("brokers", "", "seed brokers")
	prefix := fs.String("prefix", "", "topic and group prefix")
	partitions := fs.Int("partitions", 4, "partitions")
	stateDir := fs.String("state-dir", "", "state directory")
	instance := fs.String("instance", "bench-0", "instance id")
	maxBatch := fs.Int("max-batch", 1000, "commands per transaction")
	commitInterval := fs.Duration("commit-interval", 100*time.Millisecond, "commit interval")
	static := fs.Bool("static", false, "static group membership (the processor binary's default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if path := os.Getenv("KCQRS_BENCH_CHILD_CPUPROFILE"); path != "" {
		// Diagnosis: a CPU profile of each child, one file per process.
		f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid()))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	// The worker binary's default soft memory limit (cmd/processor): the
	// child stands for a worker process, so its RSS is the one with defaults.
	topology.ApplySoftMemoryLimit(topology.Defaults())
	o := &Options{Brokers: strings.Split(*brokers, ","), Partitions: int32(*partitions), MaxBatch: *maxBatch, CommitInterval: *commitInterval, LogOut: os.Stderr}
	if v := os.Getenv("KCQRS_BENCH_FETCH_MAX_BYTES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return err
		}
		o.ClientOpts = append(o.ClientOpts, kgo.FetchMaxBytes(int32(n)))
	}
	enc := json.NewEncoder(os.Stdout)
	var mu sync.Mutex
	emit := func(m childMsg) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(m)
	}
	emit(childMsg{Event: "started", At: time.Now()})
	rp, err := startProcessor(o, topicsFor(*prefix), *prefix+"processor", *instance, *stateDir,
		func(c *topology.Config) { c.StaticMembership = *static })
	if err != nil {
		return err
	}
	if path := os.Getenv("KCQRS_BENCH_HEAPPROFILE"); path != "" {
		// Diagnosis of the peak RSS: Go's memory and a heap profile at each
		// new RSS peak.
		go func() {
			var peak int64
			for range time.Tick(100 * time.Millisecond) {
				rss := peakRSSKiB()
				if rss > peak+peak/20 {
					peak = rss
					var ms runtime.MemStats
					runtime.ReadMemStats(&ms)
					if f, err := os.Create(path + ".peak"); err == nil {
						_ = pprof.WriteHeapProfile(f)
						_ = f.Close()
					}
					fmt.Fprintf(os.Stderr, "child rss peak %d MiB: heap alloc %d MiB, heap sys %d MiB, stacks %d MiB, go sys %d MiB, commands %d\n",
						rss>>10, ms.HeapAlloc>>20, ms.HeapSys>>20, ms.StackSys>>20, ms.Sys>>20, rp.Stats().Commands)
				}
			}
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	seen := 0
	var (
		owned      []int32
		txnsAt     int64
		waitCommit bool
	)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-sig:
			running := peakRSSKiB()
			err := rp.stop()
			for _, r := range rp.Restores()[seen:] {
				emit(childMsg{Restore: &r})
			}
			m := childMsg{Final: true, VmHWMKiB: running, StopVmHWMKiB: peakRSSKiB(), Commands: rp.Stats().Commands}
			if path := os.Getenv("KCQRS_BENCH_HEAPPROFILE"); path != "" {
				if f, err := os.Create(path); err == nil {
					_ = pprof.WriteHeapProfile(f)
					_ = f.Close()
				}
			}
			if err != nil {
				m.Err = err.Error()
			}
			emit(m)
			return err
		case err := <-rp.done:
			if err == nil {
				err = fmt.Errorf("processor stopped")
			}
			emit(childMsg{Final: true, Err: err.Error()})
			return err
		case <-tick.C:
			now := time.Now()
			rs := rp.Restores()
			for i := seen; i < len(rs); i++ {
				emit(childMsg{Restore: &rs[i], Event: "restored", At: now})
			}
			seen = len(rs)
			if parts := rp.Assigned(); !sameParts(parts, owned) {
				owned = parts
				emit(childMsg{Event: "assigned", Parts: parts, At: now})
				txnsAt, waitCommit = rp.Stats().Transactions, true
			}
			if waitCommit && rp.Stats().Transactions > txnsAt {
				waitCommit = false
				emit(childMsg{Event: "committed", At: now})
			}
		}
	}
}

// child is a processor process started by the parent.
type child struct {
	cmd  *exec.Cmd
	msgs chan childMsg
}

func spawnChild(o *Options, prefix, stateDir, instance string, extra ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "child",
		"--brokers", strings.Join(o.Brokers, ","), "--prefix", prefix,
		"--partitions", strconv.Itoa(int(o.Partitions)), "--state-dir", stateDir, "--instance", instance,
		"--max-batch", strconv.Itoa(o.MaxBatch), "--commit-interval", o.CommitInterval.String())
	cmd.Args = append(cmd.Args, extra...)
	cmd.Stderr = o.logOut()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, msgs: make(chan childMsg, 1024)}
	go func() {
		defer close(c.msgs)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			var m childMsg
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				c.msgs <- m
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	return c, nil
}

// restores collects restore reports until every partition has one or
// timeout passes.
func (c *child) restores(partitions int32, timeout time.Duration) ([]topology.RestoreReport, error) {
	var out []topology.RestoreReport
	seen := map[int32]bool{}
	deadline := time.After(timeout)
	for int32(len(seen)) < partitions {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return out, fmt.Errorf("child exited before restoring every partition")
			}
			if m.Err != "" {
				return out, fmt.Errorf("child: %s", m.Err)
			}
			if m.Restore != nil {
				out = append(out, *m.Restore)
				seen[m.Restore.Partition] = true
			}
		case <-deadline:
			return out, fmt.Errorf("timed out waiting for restores (%d of %d partitions)", len(seen), partitions)
		}
	}
	return out, nil
}

// term stops the child cleanly and returns its final report.
func (c *child) term() (childMsg, error) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	var final childMsg
	for m := range c.msgs {
		if m.Final {
			final = m
		}
	}
	err := c.cmd.Wait()
	if final.Err != "" {
		return final, fmt.Errorf("child: %s", final.Err)
	}
	if !final.Final {
		return final, fmt.Errorf("child ended without a final report: %v", err)
	}
	return final, nil
}

// kill ends the child with SIGKILL: no transaction end, no store close.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	for range c.msgs {
	}
	_ = c.cmd.Wait()
}

// sameParts reports whether a and b hold the same partitions, in any order.
func sameParts(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[int32]bool{}
	for _, p := range a {
		seen[p] = true
	}
	for _, p := range b {
		if !seen[p] {
			return false
		}
	}
	return true
}
