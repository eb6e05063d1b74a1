package saga_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestTransfersProperty drives random interleavings of transfers to open,
// closed, never-opened and later-opened accounts, reused transfer ids,
// duplicated commands, forged replies on the saga's reply topic, saga
// replays from random earlier offsets (with every command id out of the
// dedupe window) and broker faults. After the run no money was created or
// destroyed and every debit ended exactly once: credited and completed, or
// refused and refunded, also for the accounts erased among them (owner
// "[erased]", money kept). KCQRS_PROPERTY_SEED replays a seed; each run logs
// its own.
func TestTransfersProperty(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KCQRS_PROPERTY_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (KCQRS_PROPERTY_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 13))
	h := newHarness(t)
	mk, err := shred.NewMasterKey(bytes.Repeat([]byte{11}, shred.KeyLen))
	if err != nil {
		t.Fatal(err)
	}
	h.StartProcessor("w0", "", func(c *topology.Config) { c.DedupeWindow, c.Personal = 2, mk })

	// The saga is restarted whenever it dies (an injected EndTxn failure
	// ends Run) or is stopped for a replay.
	var mu sync.Mutex
	var current *runningSaga
	start := func() {
		mu.Lock()
		current = startSagaWith(t, h, saga.Config{InstanceID: "s0", RedriveAfter: 3 * time.Second})
		mu.Unlock()
	}
	stopSupervisor := make(chan struct{})
	var wg sync.WaitGroup
	paused := make(chan chan struct{})
	start()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			mu.Lock()
			done := current.done
			mu.Unlock()
			select {
			case <-stopSupervisor:
				return
			case resume := <-paused:
				<-resume
			case <-done:
				start()
			}
		}
	}()
	defer func() { close(stopSupervisor); wg.Wait() }()

	cl := h.Client()
	sendRetry := func(cmd client.Command) wire.Reply {
		t.Helper()
		if cmd.ID == "" {
			cmd.ID = client.NewID()
		}
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			rep, err := cl.Send(ctx, cmd)
			cancel()
			if err == nil {
				return rep
			}
			if attempt == 8 {
				t.Fatalf("%s %s: no reply: %v", cmd.Type, cmd.AggregateID, err)
			}
		}
	}
	cmd := func(id, typ, json string) client.Command {
		return client.Command{AggregateType: account.Name, AggregateID: id, Type: typ, JSON: []byte(json)}
	}

	var open []string
	var money int64
	// erase-* are ordinary accounts (sources and targets) until one is
	// erased, at a random moment, with its transfers in flight.
	erased := map[string]bool{}
	var erasable []string
	for i := range 7 {
		id := fmt.Sprintf("open-%d", i)
		if i >= 5 {
			id = fmt.Sprintf("erase-%d", i-5)
			erasable = append(erasable, id)
		}
		open = append(open, id)
		accepted(t, sendRetry(cmd(id, "OpenAccount", `{"owner":"O","currency":"EUR"}`)))
		accepted(t, sendRetry(cmd(id, "Deposit", `{"amount":1000}`)))
		money += 1000
	}
	accepted(t, sendRetry(cmd("closed-0", "OpenAccount", `{"owner":"O","currency":"EUR"}`)))
	accepted(t, sendRetry(cmd("closed-0", "CloseAccount", `{}`)))
	later := []string{"later-0", "later-1"}
	targets := append(append([]string{"closed-0", "never-0"}, open...), later...)

	faults := []kfake.Fault{
		{Keys: []kmsg.Key{kmsg.Produce}, Topic: "commands", Err: kerr.UnknownServerError, Count: 1},
		{Keys: []kmsg.Key{kmsg.Produce}, Topic: "events", Err: kerr.UnknownServerError, Count: 1},
		{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.UnknownServerError, Count: 1},
		{Keys: []kmsg.Key{kmsg.EndTxn}, TxnID: "kcqrs-transfers-s0", Err: kerr.InvalidTxnState, Count: 1},
	}
	forger, err := kgo.NewClient(kgo.SeedBrokers(h.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()

	var marks []time.Time // moments to replay from
	debits, forged, replays, duplicates := 0, 0, 0, 0
	const ops = 120
	for i := range ops {
		switch op := rng.IntN(20); {
		case op < 11: // a transfer, maybe with a reused id, maybe sent twice
			from := open[rng.IntN(len(open))]
			to := targets[rng.IntN(len(targets))]
			c := cmd(from, "DebitForTransfer", fmt.Sprintf(`{"transferId":"t%d","to":%q,"amount":%d}`, rng.IntN(4), to, 1+rng.IntN(150)))
			c.ID = client.NewID()
			rep := sendRetry(c)
			if rep.Status == wire.StatusAccepted {
				debits++
			}
			if rng.IntN(4) == 0 {
				duplicates++
				// Outside the tiny dedupe window (the saga's own commands
				// to the source fill it) a duplicate is a new command.
				switch again := sendRetry(c); {
				case again.Duplicate && (again.Status != rep.Status || again.Version != rep.Version):
					t.Fatalf("duplicate answered %+v, first %+v", again, rep)
				case !again.Duplicate && again.Status == wire.StatusAccepted:
					debits++
				}
			}
		case op < 13: // forged replies: an invalid command answered on the saga's topic, and raw bytes there
			forged++
			src := open[rng.IntN(len(open))]
			corr := fmt.Sprintf(`{"source":%q,"version":%d,"seq":%d,"transferId":"t%d","target":%q,"amount":%d,"leg":%q}`,
				src, 1+rng.IntN(30), rng.IntN(8), rng.IntN(4), targets[rng.IntN(len(targets))], 1+rng.IntN(150), []string{"credit", "complete", "refund"}[rng.IntN(3)])
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := forger.ProduceSync(ctx,
				&kgo.Record{Topic: "commands", Partition: topology.PartitionFor([]byte(src), partitions), Key: []byte(src), Value: []byte("forged"),
					Headers: []kgo.RecordHeader{
						{Key: wire.HeaderCommandID, Value: []byte(client.NewID())},
						{Key: wire.HeaderCommandType, Value: []byte("Deposit")},
						{Key: wire.HeaderAggregateType, Value: []byte(account.Name)},
						{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeJSON)},
						{Key: wire.HeaderCorrelationID, Value: []byte(corr)},
						{Key: wire.HeaderReplyTopic, Value: []byte("transfer-replies")},
					}},
				&kgo.Record{Topic: "transfer-replies", Partition: int32(rng.IntN(partitions)), Value: []byte(`{"status":"INVALID"}`),
					Headers: []kgo.RecordHeader{{Key: wire.HeaderCorrelationID, Value: []byte(corr)}}},
			).FirstErr()
			cancel()
			if err != nil {
				t.Logf("forged produce: %v", err) // a fault may refuse it: fine
			}
		case op < 14: // a target that did not exist opens
			id := later[rng.IntN(len(later))]
			sendRetry(cmd(id, "OpenAccount", `{"owner":"L","currency":"EUR"}`)) // already_exists the second time
		case op < 16: // the saga replays from an earlier point
			replays++
			mark := time.Now()
			marks = append(marks, mark)
			resume := make(chan struct{})
			paused <- resume
			mu.Lock()
			s := current
			mu.Unlock()
			_ = s.stop()
			at := "start"
			if len(marks) > 1 && rng.IntN(2) == 0 {
				at = marks[rng.IntN(len(marks)-1)].UTC().Format(time.RFC3339)
			}
			waitFor(t, "the saga group to be empty and moved back", func() bool {
				_, err := saga.Resume(context.Background(), saga.ResumeOptions{Brokers: h.Brokers, At: at, All: true})
				return err == nil
			})
			// Push earlier saga command ids out of the dedupe windows.
			for _, id := range open {
				if erased[id] {
					continue
				}
				accepted(t, sendRetry(cmd(id, "Deposit", `{"amount":1}`)))
				money++
			}
			start()
			close(resume)
		case op < 17:
			h.Cluster.Fault(faults[rng.IntN(len(faults))])
		case op == 19 && len(erasable) > 0: // an account is erased, maybe with transfers in flight
			id := erasable[0]
			erasable = erasable[1:]
			eraseAccount(t, h, mk, id)
			erased[id] = true
		default:
			marks = append(marks, time.Now())
			id := open[rng.IntN(len(open))]
			if erased[id] {
				break
			}
			accepted(t, sendRetry(cmd(id, "Deposit", `{"amount":7}`)))
			money += 7
		}
		_ = i
	}
	// Every transfer ends; meanwhile money is only ever in flight.
	accs := waitMoney(t, h, money, func(map[string]account.Account) bool { return true })
	for id, a := range accs {
		if a.Balance < 0 {
			t.Errorf("%s: balance %d", id, a.Balance)
		}
	}
	for _, id := range []string{"closed-0", "never-0"} {
		if accs[id].Balance != 0 {
			t.Errorf("%s holds %d", id, accs[id].Balance)
		}
	}
	completed, refunded := transferEvents(t, h)
	if completed+refunded != debits {
		t.Fatalf("%d debits accepted, %d ended (%d completed, %d refunded)", debits, completed+refunded, completed, refunded)
	}
	for id := range erased {
		if accs[id].Owner != shred.Erased {
			t.Errorf("%s erased, its snapshot's owner is %q", id, accs[id].Owner)
		}
	}
	t.Logf("%d ops: %d debits (%d completed, %d refunded), %d duplicates, %d forged replies, %d replays, %d erasures", ops, debits, completed, refunded, duplicates, forged, replays, len(erased))
}
