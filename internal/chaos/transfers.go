package chaos

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology/topologytest"
)

// accountEvent is one decoded event of an account, as read from the events
// topic.
type accountEvent struct {
	account string
	version int64
	event   aggregates.Event
}

// transferReport is what the events say about the transfers.
type transferReport struct {
	// Started counts TransferDebited events; Completed those ended by a
	// credit and a completion, Refunded those ended by a refund, Pending
	// those not ended yet.
	Started, Completed, Refunded, Pending int
	// PendingExample names one pending transfer (for the log).
	PendingExample string
	Violations     []string
}

// debitKey names a transfer forever: its source account and the version of
// its TransferDebited event (what the saga's command ids and the target's
// credit marks are built from; completions and refunds use its Seq).
type debitKey struct {
	source  string
	version int64
}

type transferLedger struct {
	debit    account.TransferDebited
	credits  []accountEvent // TransferCredited on any account
	refusals []accountEvent // TransferCreditRefused on any account
	complete int
	refunds  []account.TransferRefunded
}

// seqKey names a transfer on its source as completions and refunds do: its
// Seq there and its id.
type seqKey struct {
	source string
	seq    int64
	id     string
}

// checkTransfers checks every transfer's legs. The events may come in any
// order across accounts (each partition is read on its own); within one
// account they are in version order. A debit must end in exactly one of:
// one credit on its target plus one completion on its source, or one
// refusal on its target (TransferCreditRefused) plus one refund of the
// whole amount on its source. Anything else creates or destroys money (a
// credit applied twice, a refund after a credit, a refund without a
// refusal) or leaves it in flight (a lost credit, completion or refund).
// Transfers not ended yet are counted as Pending, not reported: the caller
// decides whether the saga had time to end them.
func checkTransfers(events []accountEvent) transferReport {
	var rep transferReport
	violate := func(format string, args ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
	}
	ledgers := map[debitKey]*transferLedger{}
	// A completion or refund names its transfer by Seq (and id) on the
	// source, never by id alone: ids may be reused.
	bySeq := map[seqKey]debitKey{}
	for _, e := range events {
		d, ok := e.event.(account.TransferDebited)
		if !ok {
			continue
		}
		k := debitKey{e.account, e.version}
		if _, dup := ledgers[k]; dup {
			violate("transfer debit %s@%d appears twice", e.account, e.version)
			continue
		}
		ledgers[k] = &transferLedger{debit: d}
		id := seqKey{e.account, d.Seq, d.TransferID}
		if other, dup := bySeq[id]; dup {
			violate("transfer %q seq %d debited twice from %s (versions %d and %d)", d.TransferID, d.Seq, e.account, other.version, e.version)
		}
		bySeq[id] = k
		rep.Started++
	}
	leg := func(e accountEvent, what, id, from string, debitVersion, amount int64) *transferLedger {
		l := ledgers[debitKey{from, debitVersion}]
		if l == nil {
			violate("%s %s %d for transfer %q from %s@%d, which has no debit", e.account, what, amount, id, from, debitVersion)
			return nil
		}
		if amount != l.debit.Amount || id != l.debit.TransferID || e.account != l.debit.To {
			violate("%s %s@%d (transfer %q of %d) does not match its debit %s@%d (transfer %q of %d to %s)",
				what, e.account, e.version, id, amount, from, debitVersion, l.debit.TransferID, l.debit.Amount, l.debit.To)
		}
		return l
	}
	for _, e := range events {
		switch ev := e.event.(type) {
		case account.TransferCredited:
			if l := leg(e, "credited (money created)", ev.TransferID, ev.From, ev.DebitVersion, ev.Amount); l != nil {
				l.credits = append(l.credits, e)
			}
		case account.TransferCreditRefused:
			if l := leg(e, "refused", ev.TransferID, ev.From, ev.DebitVersion, ev.Amount); l != nil {
				l.refusals = append(l.refusals, e)
			}
		case account.TransferCompleted:
			k, ok := bySeq[seqKey{e.account, ev.Seq, ev.TransferID}]
			if !ok {
				violate("%s@%d completed transfer %q seq %d, which it never debited", e.account, e.version, ev.TransferID, ev.Seq)
				continue
			}
			ledgers[k].complete++
		case account.TransferRefunded:
			k, ok := bySeq[seqKey{e.account, ev.Seq, ev.TransferID}]
			if !ok {
				violate("%s@%d refunded %d for transfer %q seq %d, which it never debited (money created)", e.account, e.version, ev.Amount, ev.TransferID, ev.Seq)
				continue
			}
			l := ledgers[k]
			l.refunds = append(l.refunds, ev)
			if ev.Amount != l.debit.Amount {
				violate("refund of transfer %q on %s is %d, its debit was %d", ev.TransferID, e.account, ev.Amount, l.debit.Amount)
			}
		}
	}
	keys := make([]debitKey, 0, len(ledgers))
	for k := range ledgers {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].source != keys[j].source {
			return keys[i].source < keys[j].source
		}
		return keys[i].version < keys[j].version
	})
	for _, k := range keys {
		l := ledgers[k]
		credits, refusals, refunds := len(l.credits), len(l.refusals), len(l.refunds)
		name := fmt.Sprintf("transfer %q (%s@%d -> %s, %d)", l.debit.TransferID, k.source, k.version, l.debit.To, l.debit.Amount)
		switch {
		case credits == 1 && refusals == 0 && l.complete == 1 && refunds == 0:
			rep.Completed++
		case credits == 0 && refusals == 1 && l.complete == 0 && refunds == 1:
			rep.Refunded++
		case credits > 1:
			violate("%s credited %d times (money created)", name, credits)
		case credits+refusals > 1:
			violate("%s decided %d times on its target (%d credits, %d refusals)", name, credits+refusals, credits, refusals)
		case credits == 1 && refunds > 0:
			violate("%s credited and refunded (money created)", name)
		case refunds > 1:
			violate("%s refunded %d times (money created)", name, refunds)
		case refunds == 1 && refusals == 0:
			violate("%s refunded without a refusal on its target", name)
		case l.complete > 1:
			violate("%s completed %d times", name, l.complete)
		case l.complete == 1 && credits == 0:
			violate("%s completed without a credit (money destroyed)", name)
		case l.complete+refunds == 0:
			// Not ended yet (the target may or may not have decided).
			rep.Pending++
			if rep.PendingExample == "" {
				rep.PendingExample = fmt.Sprintf("%s with %d credit(s), %d refusal(s)", name, credits, refusals)
			}
		default:
			violate("%s: %d credit(s), %d refusal(s), %d completion(s), %d refund(s)", name, credits, refusals, l.complete, refunds)
		}
	}
	return rep
}

// readAccountEvents reads the events topic read_committed and decodes the
// account events.
func (r *run) readAccountEvents(ctx context.Context) ([]accountEvent, error) {
	reg, err := examples.Registry()
	if err != nil {
		return nil, err
	}
	recs, err := topologytest.ReadCommitted(ctx, r.brokers, "events")
	if err != nil {
		return nil, fmt.Errorf("chaos: reading events: %w", err)
	}
	out := make([]accountEvent, 0, len(recs))
	for _, rec := range recs {
		env, ev, err := reg.DecodeEvent(rec.Value)
		if err != nil {
			continue // check() reports it
		}
		out = append(out, accountEvent{env.AggregateID, env.Version, ev})
	}
	return out, nil
}

// awaitTransfers waits until the saga ended every debited transfer (each
// has a completion or a refund on the committed events topic), or until
// timeout; check() then reports whatever is still pending.
func (r *run) awaitTransfers(ctx context.Context, timeout time.Duration) {
	began := time.Now()
	var last transferReport
	logged := 0
	for {
		polled := time.Now()
		evs, err := r.readAccountEvents(ctx)
		if err == nil {
			last = checkTransfers(evs)
			if last.Pending == 0 {
				r.logf("saga quiesced after %v: %d transfers started, %d completed, %d refunded",
					time.Since(began).Round(time.Millisecond), last.Started, last.Completed, last.Refunded)
				return
			}
		} else {
			r.logf("waiting for the saga: %v", err)
		}
		if n := int(time.Since(began) / (10 * time.Second)); n > logged {
			logged = n
			r.logf("waiting for the saga: %d of %d transfers pending after %v", last.Pending, last.Started, time.Since(began).Round(time.Second))
		}
		if time.Since(began) > timeout || ctx.Err() != nil {
			r.logf("saga not quiesced after %v: %d transfers pending, e.g. %s", timeout, last.Pending, last.PendingExample)
			return
		}
		// Reading the whole topic costs: poll at most half the time.
		time.Sleep(max(time.Second, time.Since(polled)))
	}
}
