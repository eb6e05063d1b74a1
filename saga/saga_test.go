package saga_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/internal/examples/examplestest"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

const partitions = 4

func newHarness(t *testing.T) *topologytest.Harness {
	t.Helper()
	h := examplestest.Harness(t, partitions)
	// The processors refuse the saga's legs unless signed with this key.
	h.Base.InternalCommands, h.Base.CommandSigningKey = saga.InternalCommands(), signingKey
	return h
}

// signingKey signs the legs of every saga of the tests.
var signingKey = []byte("saga-test-signing-key")

// runningSaga is a saga started by a test.
type runningSaga struct {
	*saga.Saga
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (r *runningSaga) stop() error {
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(60 * time.Second):
		return errors.New("saga did not stop within 60s")
	}
}

func startSaga(t *testing.T, h *topologytest.Harness, instance string) *runningSaga {
	t.Helper()
	return startSagaIn(t, h, "", instance)
}

func startSagaIn(t *testing.T, h *topologytest.Harness, group, instance string) *runningSaga {
	t.Helper()
	return startSagaWith(t, h, saga.Config{Group: group, InstanceID: instance})
}

func startSagaWith(t *testing.T, h *topologytest.Harness, cfg saga.Config) *runningSaga {
	t.Helper()
	instance := cfg.InstanceID
	var out io.Writer = io.Discard
	if os.Getenv("KCQRS_TEST_LOG") != "" {
		out = os.Stderr
	}
	cfg.Brokers, cfg.MaxBatch = h.Brokers, 50
	if cfg.SigningKey == nil {
		cfg.SigningKey = signingKey
	}
	cfg.Logger = slog.New(slog.NewTextHandler(out, nil)).With("instance", instance)
	s, err := saga.New(cfg, h.Registry)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningSaga{Saga: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = s.Run(ctx)
		if r.err != nil {
			cfg.Logger.Error("saga stopped", "err", r.err)
		}
		close(r.done)
	}()
	t.Cleanup(func() { _ = r.stop() })
	return r
}

func send(t *testing.T, h *topologytest.Harness, id, typ, json string) wire.Reply {
	t.Helper()
	return h.Send(client.Command{AggregateType: account.Name, AggregateID: id, Type: typ, JSON: []byte(json)})
}

func accepted(t *testing.T, rep wire.Reply) {
	t.Helper()
	if rep.Status != wire.StatusAccepted {
		t.Fatalf("reply %+v, want ACCEPTED", rep)
	}
}

// openAccounts opens ann with deposit, and bob; with closedCid, opens cid
// and closes it. Every command must be accepted.
func openAccounts(t *testing.T, h *topologytest.Harness, deposit int64, closedCid bool) {
	t.Helper()
	accepted(t, send(t, h, "ann", "OpenAccount", `{"owner":"Ann","currency":"EUR"}`))
	accepted(t, send(t, h, "ann", "Deposit", fmt.Sprintf(`{"amount":%d}`, deposit)))
	accepted(t, send(t, h, "bob", "OpenAccount", `{"owner":"Bob","currency":"EUR"}`))
	if closedCid {
		accepted(t, send(t, h, "cid", "OpenAccount", `{"owner":"Cid","currency":"EUR"}`))
		accepted(t, send(t, h, "cid", "CloseAccount", `{}`))
	}
}

// accounts returns the latest committed state of every account.
func accounts(t *testing.T, h *topologytest.Harness) map[string]account.Account {
	t.Helper()
	out := map[string]account.Account{}
	for _, r := range h.ReadTopic("snapshots-changelog") {
		s, st, err := h.Registry.DecodeSnapshot(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := st.(account.Account); ok {
			out[s.AggregateID] = a
		}
	}
	return out
}

// settled waits until no account has a pending transfer and done holds,
// and returns the accounts.
func settled(t *testing.T, h *topologytest.Harness, done func(map[string]account.Account) bool) map[string]account.Account {
	t.Helper()
	return waitSettled(t, h, nil, done)
}

// waitMoney waits as settled does, and fails at once if money appears or
// vanishes: the sum of the balances differs from want while no transfer is
// pending.
func waitMoney(t *testing.T, h *topologytest.Harness, want int64, done func(map[string]account.Account) bool) map[string]account.Account {
	t.Helper()
	return waitSettled(t, h, &want, done)
}

// waitSettled is settled, and waitMoney when want is not nil.
func waitSettled(t *testing.T, h *topologytest.Harness, want *int64, done func(map[string]account.Account) bool) map[string]account.Account {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		accs := accounts(t, h)
		pending := 0
		for _, a := range accs {
			pending += len(a.Pending)
		}
		// In flight, a credited amount is also pending on its source:
		// the sum holds only when nothing is.
		if got := total(accs); want != nil && pending == 0 && got != *want {
			t.Fatalf("money not conserved: %d, want %d: %+v", got, *want, accs)
		}
		if pending == 0 && done(accs) {
			return accs
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfers never settled: %d pending: %+v", pending, accs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// transferEvents reads the events topic (read_committed) and checks, for
// every transfer, that each leg happened at most once and that every debit
// ended exactly once: by a completion after a credit, or by a refund without
// one. It returns the number of completed and refunded transfers.
func transferEvents(t *testing.T, h *topologytest.Harness) (completed, refunded int) {
	t.Helper()
	type legs struct{ debited, credited, refused, completed, refunded int }
	byTransfer := map[string]*legs{} // source/seq/transfer id: a reused id is another transfer
	get := func(k string) *legs {
		if byTransfer[k] == nil {
			byTransfer[k] = &legs{}
		}
		return byTransfer[k]
	}
	versions := map[string]int64{}
	for _, r := range h.ReadTopic("events") {
		env, ev, err := h.Registry.DecodeEvent(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if versions[env.AggregateID]+1 != env.Version {
			t.Fatalf("%s: version %d after %d (duplicate or gap)", env.AggregateID, env.Version, versions[env.AggregateID])
		}
		versions[env.AggregateID] = env.Version
		switch e := ev.(type) {
		case account.TransferDebited:
			get(fmt.Sprintf("%s/%d/%s", env.AggregateID, e.Seq, e.TransferID)).debited++
		case account.TransferCredited:
			get(fmt.Sprintf("%s/%d/%s", e.From, e.Seq, e.TransferID)).credited++
		case account.TransferCreditRefused:
			get(fmt.Sprintf("%s/%d/%s", e.From, e.Seq, e.TransferID)).refused++
		case account.TransferCompleted:
			get(fmt.Sprintf("%s/%d/%s", env.AggregateID, e.Seq, e.TransferID)).completed++
		case account.TransferRefunded:
			get(fmt.Sprintf("%s/%d/%s", env.AggregateID, e.Seq, e.TransferID)).refunded++
		}
	}
	for k, l := range byTransfer {
		switch {
		case l.debited != 1:
			t.Errorf("%s: debited %d times", k, l.debited)
		case l.credited == 1 && l.refused == 0 && l.completed == 1 && l.refunded == 0:
			completed++
		case l.credited == 0 && l.refused == 1 && l.completed == 0 && l.refunded == 1:
			refunded++
		default:
			t.Errorf("%s: credited %d, refused %d, completed %d, refunded %d times", k, l.credited, l.refused, l.completed, l.refunded)
		}
	}
	return completed, refunded
}

func TestTransferCompletesOrIsRefunded(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	startSaga(t, h, "s0")
	openAccounts(t, h, 100, true)

	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t1","to":"bob","amount":30}`))
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t2","to":"cid","amount":20}`))    // closed
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t3","to":"nobody","amount":10}`)) // never opened
	if rep := send(t, h, "ann", "DebitForTransfer", `{"transferId":"t4","to":"bob","amount":1000}`); rep.Code != account.CodeInsufficientFunds {
		t.Fatalf("overdrawing transfer answered %+v", rep)
	}
	accs := settled(t, h, func(a map[string]account.Account) bool { return a["bob"].Balance == 30 && a["ann"].Balance == 70 })
	if accs["cid"].Balance != 0 || accs["nobody"].Balance != 0 {
		t.Fatalf("refused credits left money: %+v", accs)
	}
	if c, r := transferEvents(t, h); c != 1 || r != 2 {
		t.Fatalf("%d completed and %d refunded transfers, want 1 and 2", c, r)
	}
}

// Many concurrent transfers between accounts on every partition, some to
// closed or missing accounts, while the broker fails produce requests, offset
// commits and transaction ends, and the saga is restarted: afterwards the
// money is all there and no leg happened twice.
func TestRandomTransfersConserveMoney(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	h := newHarness(t)

	// Workers that die (a failed EndTxn ends Run with an error) are started
	// again with the same instance id and state: a crash and restart.
	var wg sync.WaitGroup
	stopSupervisor := make(chan struct{})
	var mu sync.Mutex
	var sagaNow *runningSaga
	restarts := 0
	supervise := func(start func() <-chan struct{}) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := start()
			for {
				select {
				case <-stopSupervisor:
					return
				case <-done:
					mu.Lock()
					restarts++
					mu.Unlock()
					done = start()
				}
			}
		}()
	}
	for i := range 2 {
		dir := t.TempDir()
		supervise(func() <-chan struct{} { return h.StartProcessor(fmt.Sprintf("w%d", i), dir).Done() })
	}
	supervise(func() <-chan struct{} {
		s := startSaga(t, h, "s0")
		mu.Lock()
		sagaNow = s
		mu.Unlock()
		return s.done
	})
	defer func() { close(stopSupervisor); wg.Wait() }()

	const nAccounts, initial = 12, 1000
	var ids []string
	for i := range nAccounts {
		id := fmt.Sprintf("acc-%02d", i)
		ids = append(ids, id)
		accepted(t, send(t, h, id, "OpenAccount", `{"owner":"O","currency":"EUR"}`))
		accepted(t, send(t, h, id, "Deposit", fmt.Sprintf(`{"amount":%d}`, initial)))
	}
	seen := map[int32]bool{}
	for _, id := range ids {
		seen[topology.PartitionFor([]byte(id), partitions)] = true
	}
	if len(seen) < 2 {
		t.Fatalf("accounts on %d partitions only", len(seen))
	}
	// Two closed targets and one that never exists force refunds.
	for _, id := range []string{"closed-1", "closed-2"} {
		accepted(t, send(t, h, id, "OpenAccount", `{"owner":"O","currency":"EUR"}`))
		accepted(t, send(t, h, id, "CloseAccount", `{}`))
	}
	targets := append(append([]string(nil), ids...), "closed-1", "closed-2", "missing")

	const nTransfers = 120
	type plan struct {
		from, to string
		amount   int64
	}
	plans := make([]plan, nTransfers)
	for i := range plans {
		from := ids[rng.IntN(len(ids))]
		plans[i] = plan{from, targets[rng.IntN(len(targets))], 1 + rng.Int64N(300)}
	}
	faults := []kfake.Fault{
		{Keys: []kmsg.Key{kmsg.Produce}, Topic: "commands", Err: kerr.UnknownServerError, Count: 3},
		{Keys: []kmsg.Key{kmsg.Produce}, Topic: "events", Err: kerr.UnknownServerError, Count: 2},
		{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.UnknownServerError, Count: 3},
		{Keys: []kmsg.Key{kmsg.EndTxn}, TxnID: "kcqrs-transfers-s0", Err: kerr.InvalidTxnState, Count: 1},
		{Keys: []kmsg.Key{kmsg.EndTxn}, TxnID: "kcqrs-processor-w1", Err: kerr.InvalidTxnState, Count: 1},
	}

	cl := h.Client()
	var sendWG sync.WaitGroup
	sem := make(chan struct{}, 8)
	var handles []*kfake.FaultHandle
	var accMu sync.Mutex
	debits := 0
	for i, p := range plans {
		if i == nTransfers/4 {
			for _, f := range faults {
				handles = append(handles, h.Cluster.Fault(f))
			}
		}
		if i == nTransfers/2 {
			// A clean restart of the saga in the middle of the traffic.
			mu.Lock()
			s := sagaNow
			mu.Unlock()
			s.cancel()
		}
		sem <- struct{}{}
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			defer func() { <-sem }()
			cmd := client.Command{
				AggregateType: account.Name, AggregateID: p.from, Type: "DebitForTransfer",
				ID:   fmt.Sprintf("debit-%d", i),
				JSON: fmt.Appendf(nil, `{"transferId":"t%d","to":%q,"amount":%d}`, i, p.to, p.amount),
			}
			// A client retries with the same command id until it has a reply.
			for attempt := 0; ; attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				rep, err := cl.Send(ctx, cmd)
				cancel()
				if err == nil {
					if rep.Status == wire.StatusAccepted {
						accMu.Lock()
						debits++
						accMu.Unlock()
					} else if rep.Code != account.CodeInsufficientFunds {
						t.Errorf("transfer %d: %+v", i, rep)
					}
					return
				}
				if attempt == 10 {
					t.Errorf("transfer %d: no reply after %d attempts: %v", i, attempt, err)
					return
				}
			}
		}()
	}
	sendWG.Wait()
	if t.Failed() {
		return
	}
	accs := settled(t, h, func(map[string]account.Account) bool { return true })
	var total int64
	for id, a := range accs {
		if a.Balance < 0 {
			t.Errorf("%s: balance %d", id, a.Balance)
		}
		total += a.Balance
	}
	if total != nAccounts*initial {
		t.Fatalf("money is not conserved: total %d, want %d: %+v", total, nAccounts*initial, accs)
	}
	completed, refunded := transferEvents(t, h)
	if completed+refunded != debits {
		t.Fatalf("%d debits accepted, %d transfers ended (%d completed, %d refunded)", debits, completed+refunded, completed, refunded)
	}
	if refunded == 0 || completed == 0 {
		t.Fatalf("%d completed and %d refunded: the test did not exercise both paths", completed, refunded)
	}
	hits := 0
	for _, fh := range handles {
		hits += fh.Hits()
	}
	if hits == 0 {
		t.Fatal("no injected fault was hit")
	}
	mu.Lock()
	t.Logf("%d faults hit; %d transfers: %d debits accepted, %d completed, %d refunded; %d worker restarts", hits, nTransfers, debits, completed, refunded, restarts)
	mu.Unlock()
	for _, id := range []string{"closed-1", "closed-2", "missing"} {
		if accs[id].Balance != 0 {
			t.Fatalf("%s holds %d", id, accs[id].Balance)
		}
	}
}

// A saga that lost its progress (its group's offsets expired, or a new group)
// replays every old debit and reply. With the commands long out of the dedupe
// window, the target still refuses the old credit (credited already) and the
// source refuses to end a transfer twice: no money moves.
func TestReplayedHistoryMovesNoMoney(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "", func(c *topology.Config) { c.DedupeWindow = 1 })
	first := startSaga(t, h, "s0")
	openAccounts(t, h, 100, true)
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t1","to":"bob","amount":30}`))
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t2","to":"cid","amount":20}`))
	settled(t, h, func(a map[string]account.Account) bool { return a["bob"].Balance == 30 && a["ann"].Balance == 70 })
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	// Push the saga's command ids out of every dedupe window.
	accepted(t, send(t, h, "ann", "Deposit", `{"amount":1}`))
	accepted(t, send(t, h, "bob", "Deposit", `{"amount":1}`))
	if rep := send(t, h, "cid", "Deposit", `{"amount":1}`); rep.Code != account.CodeClosed {
		t.Fatalf("deposit to a closed account: %+v", rep)
	}
	before := accounts(t, h)

	replay := startSagaIn(t, h, "kcqrs-transfers-new", "s1")
	deadline := time.Now().Add(60 * time.Second)
	// The replayed credits are refused by their targets as decided
	// already (no event); the replayed completion and refund by the
	// source, whose transfers are no longer pending.
	for st := replay.Stats(); st.Debits < 2; st = replay.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("replay did not finish: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Once these are through, so are the replayed credits before them.
	accepted(t, send(t, h, "bob", "Deposit", `{"amount":1}`))
	if rep := send(t, h, "cid", "Deposit", `{"amount":1}`); rep.Code != account.CodeClosed {
		t.Fatalf("deposit to a closed account: %+v", rep)
	}
	before["bob"] = account.Account{Balance: before["bob"].Balance + 1}
	after := settled(t, h, func(map[string]account.Account) bool { return true })

	for _, id := range []string{"ann", "bob", "cid"} {
		if after[id].Balance != before[id].Balance {
			t.Fatalf("%s: balance %d after the replay, %d before", id, after[id].Balance, before[id].Balance)
		}
	}
	if c, r := transferEvents(t, h); c != 1 || r != 1 {
		t.Fatalf("%d completed and %d refunded transfers, want 1 and 1", c, r)
	}
}

// debitedWhileStopped is a harness where a processor (its state in dir)
// opened the accounts (openAccounts, 100 for ann; cid with closedCid)
// and accepted a debit of 50 from ann for target (transfer t1), then
// stopped: the saga has a transfer to carry on, and no processor runs.
func debitedWhileStopped(t *testing.T, target string, closedCid bool) (h *topologytest.Harness, dir string) {
	t.Helper()
	h = newHarness(t)
	dir = t.TempDir()
	proc := h.StartProcessor("w0", dir)
	openAccounts(t, h, 100, closedCid)
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"t1","to":"`+target+`","amount":50}`))
	if err := proc.Stop(); err != nil {
		t.Fatal(err)
	}
	return h, dir
}

// creditAndStop runs a saga (s0, no re-drive within the test) until it has
// sent the credit of the one debit, then stops it.
func creditAndStop(t *testing.T, h *topologytest.Harness) {
	t.Helper()
	first := startSagaWith(t, h, saga.Config{InstanceID: "s0", RedriveAfter: time.Hour})
	waitFor(t, "the saga's credit", func() bool { return first.Stats().Debits == 1 })
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
}
