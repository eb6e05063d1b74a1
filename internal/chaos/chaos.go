// Package chaos proves the processor's exactly-once guarantees under crashes:
// it runs an embedded broker (persisted, with injected faults), several
// processor binaries as real OS processes (each also running the transfer
// saga), and a workload of account commands and transfers, kills and
// restarts the processes at random, waits for the saga to end every
// transfer, and at the end checks every topic and every worker's stores
// against each other.
//
// Two variants: Options.Mode "crashloop" (crashloop.go) measures liveness
// (a SIGKILL every 5-10 s, the longest time any partition made no progress,
// the time until every partition answers after a kill), and
// Options.Hostile (hostile.go) mixes hostile commands into the workload and
// checks that no internal topic holds a record the topology did not write.
//
// Run it with `make chaos` (cmd/chaos); .ci/run runs a bounded size.
package chaos

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// Options sizes a run. Zero fields get the defaults in parentheses.
type Options struct {
	// Seed makes the run's choices (workload, victims, timings, faults)
	// reproducible. (1)
	Seed uint64
	// Kills is how many times a worker is killed with SIGKILL. (20)
	Kills int
	// Workers is the number of processor processes. (3)
	Workers int
	// Partitions of the topics. (6)
	Partitions int32
	// Accounts in the workload. (24)
	Accounts int
	// Clients sending commands concurrently. (8)
	Clients int
	// ClientRate bounds each client's commands per second. Unpaced clients
	// run an account through more commands during one retry (a reply
	// timeout of 15 s) than the dedupe window remembers, and the retry is
	// then rightly run again: the window must cover the retry horizon.
	// (5)
	ClientRate int
	// DedupeWindow is the workers' --dedupe-window. (256)
	DedupeWindow int
	// TransferPercent is the share of the clients' operations that are
	// transfers (DebitForTransfer; the saga does the rest); one in eight
	// goes to a closed or never-opened account, so that it is refunded.
	// (25; negative: none)
	TransferPercent int
	// Faults injects broker faults (Produce, EndTxn, TxnOffsetCommit,
	// Heartbeat) between kills. (true unless NoFaults)
	NoFaults bool
	// SessionTimeout of the workers' group membership: how long a killed
	// worker's partitions wait before moving. (6s)
	SessionTimeout time.Duration
	// TransactionTimeout of the workers: how long a killed worker's open
	// transaction blocks readers unless it restarts. Keep it above
	// SessionTimeout: a commit waits for a running rebalance, which waits
	// for a dead member until its session expires. (10s)
	TransactionTimeout time.Duration
	// Membership of the workers in their group: "static" (--static),
	// "dynamic" (--static=false), or "" for the processor's default.
	Membership string
	// RebalanceTimeout of the workers. (kills mode: 2 x SessionTimeout;
	// crash-loop mode: the processor's default)
	RebalanceTimeout time.Duration
	// GroupProtocol of the workers (--group-protocol: classic or
	// consumer); "" is the processor's default.
	GroupProtocol string
	// GroupSessionTimeout, with GroupProtocol "consumer", sets the
	// groups' consumer.session.timeout.ms (KIP-848: the broker's setting,
	// 45 s by default) and a heartbeat interval of an eighth of it.
	GroupSessionTimeout time.Duration
	// Mode is "kills" (the exactly-once crash test: kills, terms, pauses
	// and broker faults at random every 0.3-1.5 s) or "crashloop" (the
	// liveness test: a SIGKILL every 5-10 s, no broker faults, the
	// workers' own timeout defaults unless set here, and probes of every
	// partition after a kill). Both end with the full check. ("kills")
	Mode string
	// Hostile interleaves hostile commands with the workload (hostile.go):
	// forged reply topics and partitions, huge and compressed commands,
	// rejections that amplify their input; the check then also verifies
	// that no internal topic holds a record the topology did not write.
	Hostile bool
	// NoSagaReplays turns off the saga replays (replay.go): by default,
	// from time to time during the workload, a saga in a new group is
	// resumed at the start of the events topic, runs a few seconds beside
	// the workers' sagas and stops; its legs must all be deduplicated or
	// refused without effect.
	NoSagaReplays bool
	// Erasures, when > 0, runs the workers with a master key (personal
	// data sealed) and erases that many accounts of their own during the
	// workload (erasure.go). (0)
	Erasures int
	// Standbys per partition. (1)
	Standbys int
	// Dir holds the broker's data, the workers' state and logs; "" is a
	// new temporary directory, removed after a successful run.
	Dir string
	// ProcessorBin is the processor binary; "" builds ./cmd/processor.
	ProcessorBin string
	// Log receives progress lines. (io.Discard)
	Log io.Writer
}

func (o *Options) setDefaults() {
	o.Seed = cmp.Or(o.Seed, 1)
	o.Kills = cmp.Or(o.Kills, 20)
	o.Workers = cmp.Or(o.Workers, 3)
	o.Partitions = cmp.Or(o.Partitions, 6)
	o.Accounts = cmp.Or(o.Accounts, 24)
	o.Clients = cmp.Or(o.Clients, 8)
	o.ClientRate = cmp.Or(o.ClientRate, 5)
	o.DedupeWindow = cmp.Or(o.DedupeWindow, 256)
	o.TransferPercent = cmp.Or(o.TransferPercent, 25)
	o.Mode = cmp.Or(o.Mode, "kills")
	if o.Mode == "crashloop" {
		// Measure what a user gets: the workers' own defaults.
		o.NoFaults = true
	} else {
		o.SessionTimeout = cmp.Or(o.SessionTimeout, 6*time.Second)
		o.TransactionTimeout = cmp.Or(o.TransactionTimeout, 10*time.Second)
		o.RebalanceTimeout = cmp.Or(o.RebalanceTimeout, 2*o.SessionTimeout)
	}
	o.Standbys = cmp.Or(o.Standbys, 1)
	o.Log = cmp.Or(o.Log, io.Discard)
}

// Summary is what a run did and found.
type Summary struct {
	Seed                          uint64
	Commands, Retries, Resends    int64
	Accepted, Rejected            int64
	Kills, Terms, Pauses, Crashes int64
	Faults, Rebalances            int64
	Events, Replies               int
	// Transfers started (accepted debits), completed (credited) and
	// refunded, from the events.
	Transfers, Completed, Refunded int
	DuplicatesFound, Lost          int
	Erased                         int // accounts erased (Options.Erasures)
	Violations                     []string
	// Failovers: SIGKILL of a worker left down to the first reply for one
	// of its partitions (the survivors took over). RestartFailovers: the
	// same with the worker restarted at once.
	Failovers, RestartFailovers            []time.Duration
	StoresChecked, StoreKeysChecked        int
	Elapsed                                time.Duration
	MaxCommandLatency, MedianFailover, Max time.Duration
	MedianRestartFailover                  time.Duration
	// MaxNoProgress is the longest time any partition had a command
	// waiting and answered none, NoProgressPartition that partition.
	MaxNoProgress       time.Duration
	NoProgressPartition int32
	// Hostile commands sent (Options.Hostile) and records found in an
	// internal topic that the topology did not write.
	Hostile int64
	Foreign int
	// SagaReplays run during the workload, and the transfer events
	// (debits, credits, refusals) they reacted to.
	SagaReplays  int
	SagaReplayed int64
	// GroupMaxUnstable and GroupMaxMembers: per worker group (crash-loop
	// mode), the longest time out of the Stable state and the most members.
	GroupMaxUnstable map[string]time.Duration
	GroupMaxMembers  map[string]int
}

// String is the one-line summary.
func (s Summary) String() string {
	return fmt.Sprintf("chaos seed=%d: commands=%d (accepted %d, rejected %d, retries %d, resends %d) transfers=%d (completed %d, refunded %d) kills=%d terms=%d pauses=%d crashes=%d faults=%d rebalances=%d events=%d replies=%d stores=%d failover median=%v max=%v (restarted at once: median %v max %v) max command latency %v, longest no progress %v (partition %d), hostile %d, foreign records %d, saga replays %d (%d events replayed): duplicates found: %d, lost: %d, violations: %d, took %v",
		s.Seed, s.Commands, s.Accepted, s.Rejected, s.Retries, s.Resends, s.Transfers, s.Completed, s.Refunded,
		s.Kills, s.Terms, s.Pauses, s.Crashes, s.Faults, s.Rebalances, s.Events, s.Replies, s.StoresChecked, s.MedianFailover.Round(time.Millisecond), s.Max.Round(time.Millisecond),
		s.MedianRestartFailover.Round(time.Millisecond), maxOf(s.RestartFailovers).Round(time.Millisecond), s.MaxCommandLatency.Round(time.Millisecond),
		s.MaxNoProgress.Round(time.Millisecond), s.NoProgressPartition, s.Hostile, s.Foreign, s.SagaReplays, s.SagaReplayed,
		s.DuplicatesFound, s.Lost, len(s.Violations), s.Elapsed.Round(time.Second)) + s.erasedNote() + s.groups()
}

func (s Summary) groups() string {
	var out string
	gs := make([]string, 0, len(s.GroupMaxMembers))
	for g := range s.GroupMaxMembers {
		gs = append(gs, g)
	}
	sort.Strings(gs)
	for _, g := range gs {
		out += fmt.Sprintf("; group %s: longest out of Stable %v, most members %d", g, s.GroupMaxUnstable[g].Round(time.Millisecond), s.GroupMaxMembers[g])
	}
	return out
}

// ErrViolation is returned (wrapped) when a check failed.
var ErrViolation = errors.New("chaos: exactly-once violated")

const group = "kcqrs-processor"

// Run performs one chaos run.
func Run(ctx context.Context, o Options) (Summary, error) {
	o.setDefaults()
	start := time.Now()
	if o.Mode != "kills" && o.Mode != "crashloop" {
		return Summary{Seed: o.Seed}, fmt.Errorf("chaos: mode %q: want kills or crashloop", o.Mode)
	}
	r := &run{o: o, rng: rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15)), sum: Summary{Seed: o.Seed, GroupMaxUnstable: map[string]time.Duration{}, GroupMaxMembers: map[string]int{}}, prog: newProgress()}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "kcqrs-chaos-")
		if err != nil {
			return r.sum, err
		}
		dir = d
	}
	r.dir = dir
	err := r.run(ctx)
	r.sum.Elapsed = time.Since(start)
	if err == nil && len(r.sum.Violations) > 0 {
		err = fmt.Errorf("%w: %d violations, first: %s (state kept in %s)", ErrViolation, len(r.sum.Violations), r.sum.Violations[0], dir)
	}
	if err == nil && o.Dir == "" {
		os.RemoveAll(dir)
	}
	return r.sum, err
}

type run struct {
	o   Options
	dir string
	sum Summary

	rngMu sync.Mutex
	rng   *rand.Rand

	cluster *kfake.Cluster
	brokers []string
	bin     string
	adm     *kadm.Client
	admCl   *kgo.Client

	workers []*worker

	// The driver's knowledge of the workload: the final reply to every
	// command id it sent.
	mu           sync.Mutex
	outcomes     map[string]outcome
	lat          []time.Duration
	faultHandles []faultHandle
	probes       int
	prog         *progress
	topicsBefore map[string]bool
	erased       []string // accounts erased (erasure.go)
}

type outcome struct {
	account string
	typ     string
	amount  int64
	// to and transferID: DebitForTransfer only.
	to, transferID string
	reply          wire.Reply
}

func (r *run) intn(n int) int {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.IntN(n)
}

func (r *run) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.intn(int(hi-lo)+1))
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.o.Log, "%s chaos: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func (r *run) violate(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sum.Violations) < 1000 {
		r.sum.Violations = append(r.sum.Violations, fmt.Sprintf(format, args...))
	}
}

func (r *run) run(ctx context.Context) error {
	if err := r.build(ctx); err != nil {
		return err
	}
	c, err := embedded.Start(embedded.Options{
		DataDir: filepath.Join(r.dir, "broker"),
		// Compaction would drop changelog records the store check
		// replays; the check needs the whole log.
		CompactionIntervalMs: int(time.Hour / time.Millisecond),
	})
	if err != nil {
		return err
	}
	defer c.Close()
	r.cluster, r.brokers = c, c.ListenAddrs()
	r.countRebalances()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		return err
	}
	defer admCl.Close()
	r.adm, r.admCl = kadm.NewClient(admCl), admCl

	if r.o.GroupProtocol == "consumer" && r.o.GroupSessionTimeout > 0 {
		if err := r.setConsumerGroupTimeouts(ctx, r.o.GroupSessionTimeout, r.o.GroupSessionTimeout/8); err != nil {
			return err
		}
	}
	for i := range r.o.Workers {
		w := &worker{r: r, id: fmt.Sprintf("w%d", i)}
		r.workers = append(r.workers, w)
		if err := w.start(); err != nil {
			return err
		}
	}
	defer func() {
		for _, w := range r.workers {
			w.kill()
		}
	}()

	cl, err := r.newClient(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	accounts := make([]string, r.o.Accounts)
	for i := range accounts {
		accounts[i] = fmt.Sprintf("acct-%03d", i)
	}
	r.outcomes = map[string]outcome{}
	// Open every account first (retried like every command).
	for _, a := range accounts {
		r.send(ctx, cl, outcome{account: a, typ: "OpenAccount"}, "open-"+a)
	}
	// Transfers to these fail at the target and must be refunded.
	dead := []string{"closed-000", "closed-001", "never-opened-000", "never-opened-001"}
	for _, a := range dead[:2] {
		r.send(ctx, cl, outcome{account: a, typ: "OpenAccount"}, "open-"+a)
		r.send(ctx, cl, outcome{account: a, typ: "CloseAccount"}, "close-"+a)
	}
	var toErase []string
	if r.o.Erasures > 0 {
		toErase = r.erasables(ctx, cl)
	}
	r.logf("%d accounts open; workload, kills and faults start", len(accounts))
	// Liveness counts from here: the group's first formation is not a
	// stall of the workload.
	r.prog = newProgress()

	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	for i := range r.o.Clients {
		load.Add(1)
		go func() {
			defer load.Done()
			r.client(loadCtx, cl, i, accounts, dead)
		}()
	}
	var bg sync.WaitGroup
	faultCtx, stopFaults := context.WithCancel(ctx)
	if !r.o.NoFaults {
		bg.Add(1)
		go func() { defer bg.Done(); r.faults(faultCtx) }()
	}
	if r.o.Hostile {
		r.noteTopics(ctx)
		load.Add(1)
		go func() { defer load.Done(); r.hostile(loadCtx) }()
	}
	if len(toErase) > 0 {
		load.Add(1)
		go func() { defer load.Done(); r.erase(loadCtx, cl, toErase) }()
	}
	if !r.o.NoSagaReplays && r.o.TransferPercent > 0 {
		load.Add(1)
		go func() { defer load.Done(); r.sagaReplays(loadCtx) }()
	}
	if r.o.Mode == "crashloop" {
		watchCtx, stopWatch := context.WithCancel(ctx)
		var watching sync.WaitGroup
		watching.Add(1)
		go func() { defer watching.Done(); r.watchGroups(watchCtx) }()
		// The groups are watched until the workers stop: a group still
		// rebalancing after the last kill holds the saga's transfers.
		defer func() { stopWatch(); watching.Wait() }()
		r.crashLoop(ctx, cl, accounts)
	} else {
		r.killLoop(ctx, cl, accounts)
	}
	stopFaults()
	bg.Wait()
	r.removeFaults()
	stopLoad()
	load.Wait()
	r.sum.MaxNoProgress, r.sum.NoProgressPartition, _ = r.prog.worst()
	if err := ctx.Err(); err != nil {
		return err
	}
	// The saga runs inside the workers: let it end every transfer before
	// they stop. check() reports any transfer still pending.
	r.logf("workload done: %d commands; waiting for the saga", r.sum.Commands)
	r.awaitTransfers(ctx, 3*time.Minute)
	r.logf("stopping the workers gracefully")
	for _, w := range r.workers {
		w.stop()
	}
	for _, w := range r.workers {
		if !w.wait(60 * time.Second) {
			r.violate("worker %s did not stop within 60s of SIGTERM", w.id)
			w.kill()
		}
	}
	if r.o.Hostile {
		if err := r.checkHostile(ctx); err != nil {
			return err
		}
	}
	return r.check(ctx)
}

func (r *run) build(ctx context.Context) error {
	if r.o.ProcessorBin != "" {
		r.bin = r.o.ProcessorBin
		return nil
	}
	r.bin = filepath.Join(r.dir, "processor")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", r.bin, "github.com/kcqrs/kcqrs/cmd/processor")
	cmd.Stdout, cmd.Stderr = r.o.Log, r.o.Log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("chaos: building the processor: %w", err)
	}
	return nil
}

func (r *run) newClient(ctx context.Context) (*client.Client, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cl, err := client.New(cctx, client.Config{Brokers: r.brokers})
		cancel()
		if err == nil {
			return cl, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("chaos: client: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// send sends one command with id until it is answered, retrying with the
// same id (the processor must deduplicate), and records the final reply.
func (r *run) send(ctx context.Context, cl *client.Client, o outcome, id string) (wire.Reply, bool) {
	body := fmt.Sprintf(`{"amount":%d}`, o.amount)
	switch o.typ {
	case "OpenAccount":
		body = `{"owner":"chaos","currency":"EUR"}`
	case "CloseAccount":
		body = `{}`
	case "DebitForTransfer":
		b, err := json.Marshal(struct {
			TransferID string `json:"transferId"`
			To         string `json:"to"`
			Amount     int64  `json:"amount"`
		}{o.transferID, o.to, o.amount})
		if err != nil {
			panic(err) // strings and an int always marshal
		}
		body = string(b)
	}
	cmd := client.Command{AggregateType: "account", AggregateID: o.account, Type: o.typ, ID: id, JSON: []byte(body)}
	atomic.AddInt64(&r.sum.Commands, 1)
	began := time.Now()
	part := topology.PartitionFor([]byte(o.account), r.o.Partitions)
	r.prog.begin(part)
	answered := false
	defer func() { r.prog.end(part, answered) }()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			atomic.AddInt64(&r.sum.Retries, 1)
		}
		// Sends must outlive the workload's end: an unanswered command
		// would leave the driver not knowing its effect.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		rep, err := cl.Send(sctx, cmd)
		cancel()
		if err == nil {
			answered = true
			o.reply = rep
			r.mu.Lock()
			r.outcomes[id] = o
			r.lat = append(r.lat, time.Since(began))
			r.mu.Unlock()
			if rep.CommandID != id {
				r.violate("command %s answered with the reply of %s", id, rep.CommandID)
			}
			return rep, true
		}
		if attempt == 3 {
			r.logf("command %s (%s on partition %d) still unanswered after %v: %v", id, o.account,
				topology.PartitionFor([]byte(o.account), r.o.Partitions), time.Since(began).Round(time.Second), err)
		}
		// The crash loop and the hostile commands may stop a partition
		// for good on a broken build: a bound keeps the run finite (and
		// the stall is reported, as a violation and as no progress).
		bounded, limit := r.o.Hostile || r.o.Mode == "crashloop", 5*time.Minute
		if bounded {
			limit = 3 * time.Minute
		}
		if (ctx.Err() != nil || bounded) && time.Since(began) > limit {
			r.mu.Lock()
			r.sum.Lost++
			r.mu.Unlock()
			r.violate("command %s never answered in %v: %v", id, time.Since(began).Round(time.Second), err)
			return wire.Reply{}, false
		}
	}
}

// client is one simulated client: deposits, withdrawals and transfers on
// random accounts, each with a unique id, and now and then the same command
// again (a client retrying after a lost reply) which must change nothing.
// A transfer is its first leg (DebitForTransfer on the source); the saga
// in the workers sends the rest, and check() verifies every transfer's legs.
// Some transfers go to dead accounts (closed or never opened): their
// credit is rejected and the saga must refund them.
func (r *run) client(ctx context.Context, cl *client.Client, n int, accounts, dead []string) {
	tick := time.NewTicker(time.Second / time.Duration(r.o.ClientRate))
	defer tick.Stop()
	for seq := 0; ctx.Err() == nil; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		id := fmt.Sprintf("c%d-%d", n, seq)
		o := outcome{account: accounts[r.intn(len(accounts))], amount: int64(1 + r.intn(100))}
		switch k := r.intn(100); {
		case k < r.o.TransferPercent:
			o.typ, o.transferID = "DebitForTransfer", "t-"+id
			o.to = accounts[r.intn(len(accounts))]
			if r.intn(8) == 0 {
				o.to = dead[r.intn(len(dead))]
			}
		case k < r.o.TransferPercent+(100-r.o.TransferPercent)*4/10:
			o.typ, o.amount = "Withdraw", int64(1+r.intn(150))
		default:
			o.typ = "Deposit"
		}
		first, ok := r.send(ctx, cl, o, id)
		if !ok {
			return
		}
		if r.intn(20) == 0 {
			atomic.AddInt64(&r.sum.Resends, 1)
			again, ok := r.send(ctx, cl, o, id)
			atomic.AddInt64(&r.sum.Commands, -1) // the same command
			if ok && (!again.Duplicate || again.Status != first.Status || again.Version != first.Version) {
				r.violate("resent command %s answered %+v, first answer %+v", id, again, first)
			}
			if ok {
				// Keep the first outcome: the resend is the same command.
				r.mu.Lock()
				o.reply = first
				r.outcomes[id] = o
				r.mu.Unlock()
			}
		}
	}
}

// worker is one processor process.
type worker struct {
	r    *run
	id   string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// expected is set while the driver itself stops or kills the process,
	// so that the supervisor does not count the exit as a crash.
	expected bool
}

func (w *worker) stateDir() string { return filepath.Join(w.r.dir, w.id) }

func (w *worker) start() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(w.r.dir, w.id+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(w.r.bin,
		"--brokers", w.r.brokers[0],
		"--instance-id", w.id,
		"--state-dir", w.stateDir(),
		"--partitions", strconv.Itoa(int(w.r.o.Partitions)),
		"--commit-interval", "50ms",
		"--standbys", strconv.Itoa(w.r.o.Standbys),
		"--dedupe-window", strconv.Itoa(w.r.o.DedupeWindow),
		"--standby-interval", "500ms",
		"--http-addr", "127.0.0.1:0",
	)
	// Every worker (processor and saga) of the run shares the key of the
	// transfer legs' signatures, as a deployment must.
	cmd.Env = append(os.Environ(), "KCQRS_TRANSFER_SIGNING_KEY="+signingKey)
	if w.r.o.Erasures > 0 {
		cmd.Env = append(cmd.Env, "KCQRS_MASTER_KEY="+chaosMasterKey)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"--session-timeout", w.r.o.SessionTimeout},
		{"--rebalance-timeout", w.r.o.RebalanceTimeout},
		{"--transaction-timeout", w.r.o.TransactionTimeout},
	} {
		if d.v > 0 {
			cmd.Args = append(cmd.Args, d.flag, d.v.String())
		}
	}
	switch w.r.o.Membership {
	case "static":
		cmd.Args = append(cmd.Args, "--static")
	case "dynamic":
		cmd.Args = append(cmd.Args, "--static=false")
	}
	if w.r.o.GroupProtocol != "" {
		cmd.Args = append(cmd.Args, "--group-protocol", w.r.o.GroupProtocol)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("chaos: start %s: %w", w.id, err)
	}
	done := make(chan struct{})
	w.cmd, w.done, w.expected = cmd, done, false
	go func() {
		err := cmd.Wait()
		logf.Close()
		w.mu.Lock()
		expected := w.expected
		w.mu.Unlock()
		close(done)
		if !expected {
			atomic.AddInt64(&w.r.sum.Crashes, 1)
			w.r.logf("%s exited on its own (%v); restarting", w.id, err)
			time.Sleep(200 * time.Millisecond)
			w.mu.Lock()
			same := w.done == done
			w.mu.Unlock()
			if same {
				if err := w.start(); err != nil {
					w.r.violate("restart %s: %v", w.id, err)
				}
			}
		}
	}()
	return nil
}

func (w *worker) signal(sig syscall.Signal) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmd != nil && w.cmd.Process != nil {
		if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
			w.expected = true
		}
		_ = w.cmd.Process.Signal(sig)
	}
}

func (w *worker) kill() {
	w.signal(syscall.SIGKILL)
	w.wait(30 * time.Second)
}

func (w *worker) stop() { w.signal(syscall.SIGTERM) }

func (w *worker) wait(d time.Duration) bool {
	w.mu.Lock()
	done := w.done
	w.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// killLoop kills (SIGKILL), stops (SIGTERM) or pauses (SIGSTOP) a random
// worker at random moments and restarts it, until Kills SIGKILLs were done.
// Every fourth kill measures failover: the victim stays down until a command
// for one of its partitions is answered by the others.
func (r *run) killLoop(ctx context.Context, cl *client.Client, accounts []string) {
	probe := 0
	for r.sum.Kills < int64(r.o.Kills) && ctx.Err() == nil {
		time.Sleep(r.between(300*time.Millisecond, 1500*time.Millisecond))
		w := r.workers[r.intn(len(r.workers))]
		switch k := r.intn(10); {
		case k < 7:
			measure := r.sum.Kills%4 == 0
			// Every other measured kill restarts the victim at once (a
			// supervisor restarting a crashed pod); the others leave it
			// down, so the survivors must take over.
			restartAtOnce := measure && (r.sum.Kills/4)%2 == 1
			var parts []int32
			if measure {
				// A just restarted victim may not own anything yet.
				for deadline := time.Now().Add(15 * time.Second); len(parts) == 0 && time.Now().Before(deadline); {
					if parts = r.assignedTo(ctx, w.id); len(parts) == 0 {
						time.Sleep(200 * time.Millisecond)
					}
				}
			}
			began := time.Now()
			w.kill()
			r.sum.Kills++
			r.logf("SIGKILL %s (kill %d/%d)", w.id, r.sum.Kills, r.o.Kills)
			if restartAtOnce {
				if err := w.start(); err != nil {
					r.violate("restart %s: %v", w.id, err)
				}
			}
			if measure && len(parts) > 0 {
				acct := accountOn(accounts, parts[r.intn(len(parts))], r.o.Partitions)
				probe++
				if _, ok := r.send(ctx, cl, outcome{account: acct, typ: "Deposit", amount: 1}, fmt.Sprintf("probe-%d", probe)); ok {
					d := time.Since(began)
					if restartAtOnce {
						r.sum.RestartFailovers = append(r.sum.RestartFailovers, d)
					} else {
						r.sum.Failovers = append(r.sum.Failovers, d)
					}
					r.logf("failover of %s's partitions %v (restarted at once: %v): first reply after %v", w.id, parts, restartAtOnce, d.Round(time.Millisecond))
				}
			} else {
				time.Sleep(r.between(0, time.Second))
			}
			if !restartAtOnce {
				if err := w.start(); err != nil {
					r.violate("restart %s: %v", w.id, err)
				}
			}
		case k < 9:
			w.stop()
			r.sum.Terms++
			if !w.wait(60 * time.Second) {
				r.violate("%s did not stop within 60s of SIGTERM", w.id)
				w.kill()
			}
			r.logf("SIGTERM %s", w.id)
			time.Sleep(r.between(0, 500*time.Millisecond))
			if err := w.start(); err != nil {
				r.violate("restart %s: %v", w.id, err)
			}
		default:
			// A paused process: a zombie when it wakes up.
			w.signal(syscall.SIGSTOP)
			r.sum.Pauses++
			time.Sleep(r.between(200*time.Millisecond, 2*time.Second))
			w.signal(syscall.SIGCONT)
			r.logf("SIGSTOP/SIGCONT %s", w.id)
		}
	}
}

// assignedTo returns the command partitions the group gave to worker id.
func (r *run) assignedTo(ctx context.Context, id string) []int32 {
	gs, err := r.adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil
	}
	var out []int32
	for _, m := range gs[group].Members {
		if m.ClientID != group+"-"+id {
			continue
		}
		if ca, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range ca.Topics {
				if t.Topic == "commands" {
					out = append(out, t.Partitions...)
				}
			}
		}
	}
	return out
}

func accountOn(accounts []string, p, partitions int32) string {
	for _, a := range accounts {
		if topology.PartitionFor([]byte(a), partitions) == p {
			return a
		}
	}
	return accounts[0]
}

// faultKinds are the faults injected, one request each.
var faultKinds = []struct {
	name string
	f    kfake.Fault
}{
	{"produce", kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "events", Err: kerr.NotLeaderForPartition}},
	{"produce", kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "snapshots-changelog", Err: kerr.RequestTimedOut}},
	{"endtxn", kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, Err: kerr.CoordinatorLoadInProgress}},
	{"endtxn", kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, Err: kerr.UnknownServerError}},
	{"txnoffsetcommit", kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.UnknownServerError}},
	{"txnoffsetcommit", kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.IllegalGeneration}},
	{"heartbeat", kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Err: kerr.RebalanceInProgress}},
}

func (r *run) faults(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.between(300*time.Millisecond, 2*time.Second)):
		}
		k := faultKinds[r.intn(len(faultKinds))]
		f := k.f
		f.Count = 1
		h := r.cluster.Fault(f)
		r.mu.Lock()
		r.faultHandles = append(r.faultHandles, faultHandle{k.name, h})
		r.mu.Unlock()
	}
}

type faultHandle struct {
	name string
	h    *kfake.FaultHandle
}

// removeFaults removes the faults that have not fired and counts those
// that did.
func (r *run) removeFaults() {
	r.mu.Lock()
	defer r.mu.Unlock()
	byKind := map[string]int{}
	for _, fh := range r.faultHandles {
		if n := fh.h.Hits(); n > 0 {
			r.sum.Faults += int64(n)
			byKind[fh.name] += n
		}
		fh.h.Remove()
	}
	r.faultHandles = nil
	r.logf("faults that fired: %v", byKind)
}

// countRebalances counts completed group generations (from SyncGroup).
func (r *run) countRebalances() {
	var mu sync.Mutex
	gens := map[int32]bool{}
	r.cluster.ControlKey(int16(kmsg.SyncGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r.cluster.KeepControl()
		if s, ok := req.(*kmsg.SyncGroupRequest); ok && s.Group == group {
			mu.Lock()
			if !gens[s.Generation] {
				gens[s.Generation] = true
				atomic.AddInt64(&r.sum.Rebalances, 1)
			}
			mu.Unlock()
		}
		return nil, nil, false
	})
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func maxOf(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func (s Summary) erasedNote() string {
	if s.Erased == 0 {
		return ""
	}
	return fmt.Sprintf(", erased %d (owners [erased], balances intact, others readable)", s.Erased)
}
