package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// transferOutcome is what `kcqrs transfer` prints.
type transferOutcome struct {
	TransferID string     `json:"transferId"`
	Reply      wire.Reply `json:"reply"`
	// Outcome (with --wait, once the debit was accepted): completed or
	// refunded, as the source account's events say.
	Outcome string `json:"outcome,omitempty"`
	// Reason is why a refunded transfer was refunded.
	Reason string `json:"reason,omitempty"`
}

// Transfer outcomes, named after the source account's last event of it.
const (
	outcomeCompleted = "completed" // TransferCompleted: the target was credited
	outcomeRefunded  = "refunded"  // TransferRefunded: the target refused, the money is back
)

// runTransfer sends the first leg of a transfer. The rest is the saga's job;
// the reply says whether the money left the source, and --wait follows the
// transfer to its end.
func runTransfer(args []string) (rerr error) {
	sub := "transfer"
	defer func() { rerr = withGrants(sub, rerr) }()
	c := newCLI("transfer", `usage: kcqrs transfer --from <account> --to <account> --amount <cents> [--wait] [flags]

Sends DebitForTransfer to the source account and prints the reply as JSON.
The transfer saga (run by the processor, and by make run) then credits the
target, or refunds the source when the target refuses (a missing or closed
account). With --wait, kcqrs follows the source account's events until the
transfer ends and prints its outcome (completed or refunded).

`+exitCodes)
	var t replyTopics
	t.bind(c)
	var events string
	c.String(&events, "events-topic", topology.Defaults().Topics.Events, "events topic (read by --wait)")
	var from, to, transferID, cmdID string
	var amount int64
	var wait bool
	c.Group("Transfer")
	c.FlagsOnly()
	c.String(&from, "from", "", "source account id")
	c.String(&to, "to", "", "target account id")
	c.Int64(&amount, "amount", 0, "amount in minor units (cents)")
	c.String(&transferID, "transfer-id", "", "transfer id (default random); reuse it with the same --command-id to retry")
	c.String(&cmdID, "command-id", "", "command id (reuse it to retry safely; default random)")
	c.Bool(&wait, "wait", false, "wait (within --timeout) until the transfer completed or was refunded; exit 9 when refunded")
	if err := c.parse(args); err != nil {
		return err
	}
	if wait {
		sub = "transfer --wait"
	}
	if from == "" || to == "" || amount <= 0 {
		return c.usageError(errors.New("--from, --to and a positive --amount are required"))
	}
	if transferID == "" {
		transferID = client.NewID()
	}
	// The command in Avro's JSON encoding (the Avro field names).
	body, err := json.Marshal(struct {
		TransferID string `json:"transferId"`
		To         string `json:"to"`
		Amount     int64  `json:"amount"`
	}{transferID, to, amount})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	defer cancel()
	var follow *eventFollower
	if wait {
		// Where the source's events are now: its end of the transfer can
		// only come after.
		if follow, err = c.followEvents(ctx, events); err != nil {
			return err
		}
		defer follow.close()
	}
	cl, err := c.client(ctx, t)
	if err != nil {
		return err
	}
	rep, err := cl.Send(ctx, client.Command{AggregateType: account.Name, AggregateID: from, Type: "DebitForTransfer", ID: cmdID, JSON: body})
	cl.Close()
	if err != nil {
		return err
	}
	out := transferOutcome{TransferID: transferID, Reply: rep}
	if follow == nil || rep.Status != wire.StatusAccepted {
		if err := printJSON(os.Stdout, out); err != nil {
			return err
		}
		return replyExit(rep)
	}
	out.Outcome, out.Reason, err = follow.transferEnd(ctx, from, transferID)
	if err != nil {
		_ = printJSON(os.Stdout, out)
		return fmt.Errorf("transfer %s: debit accepted, outcome unknown: %w", transferID, err)
	}
	if err := printJSON(os.Stdout, out); err != nil {
		return err
	}
	if out.Outcome == outcomeRefunded {
		return &exitError{code: exitRefunded}
	}
	return nil
}

// eventFollower reads the events topic (read_committed) from the end
// offsets it had when it was opened.
type eventFollower struct {
	cl  *kgo.Client
	reg *topology.Registry
}

func (c *cli) followEvents(ctx context.Context, topic string) (*eventFollower, error) {
	reg, err := examples.Registry()
	if err != nil {
		return nil, err
	}
	opts, err := c.clientOpts()
	if err != nil {
		return nil, err
	}
	adm, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	adm.Close()
	if err == nil {
		err = ends.Error()
	}
	if err == nil && len(ends[topic]) == 0 {
		err = fmt.Errorf("events topic %q does not exist", topic)
	}
	if err != nil {
		return nil, fmt.Errorf("events topic end offsets: %w", err)
	}
	start := map[int32]kgo.Offset{}
	for p, o := range ends[topic] {
		start[p] = kgo.NewOffset().At(o.Offset)
	}
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return nil, err
	}
	return &eventFollower{cl: cl, reg: reg}, nil
}

func (f *eventFollower) close() { f.cl.Close() }

// transferEnd waits for the source account's TransferCompleted or
// TransferRefunded event of transferID.
func (f *eventFollower) transferEnd(ctx context.Context, source, transferID string) (outcome, reason string, err error) {
	for {
		fetches := f.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return "", "", fmt.Errorf("no TransferCompleted or TransferRefunded event yet (is the transfer saga running?): %w", ctx.Err())
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return "", "", ferr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if outcome != "" || string(r.Key) != source {
				return
			}
			env, ev, err := f.reg.DecodeEvent(r.Value)
			if err != nil || env.AggregateType != account.Name || env.AggregateID != source {
				return
			}
			switch e := ev.(type) {
			case account.TransferCompleted:
				if e.TransferID == transferID {
					outcome = outcomeCompleted
				}
			case account.TransferRefunded:
				if e.TransferID == transferID {
					outcome, reason = outcomeRefunded, e.Reason
				}
			}
		})
		if outcome != "" {
			return outcome, reason, nil
		}
	}
}
