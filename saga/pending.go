package saga

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/topology"
)

// Transfer states, as ListPending reports them: the state machine of one
// transfer, named by (source, seq). Debited: the credit is requested (or on
// its way); Credited or Refused: the target decided, the completion or
// refund is requested. Completed and Refunded are final and not listed.
const (
	StateDebited  = "debited"
	StateCredited = "credited"
	StateRefused  = "refused"
)

// PendingTransfer is a transfer not ended yet, as the events topic tells.
type PendingTransfer struct {
	Source       string    `json:"source"`
	Seq          int64     `json:"seq"`
	DebitVersion int64     `json:"debitVersion"`
	TransferID   string    `json:"transferId"`
	Target       string    `json:"target"`
	Amount       int64     `json:"amount"`
	State        string    `json:"state"`
	Debited      time.Time `json:"debited"`
}

// ListPending reads the whole events topic (read_committed) and returns the
// transfers debited and not completed or refunded, oldest first: the ground
// truth, independent of any saga worker's memory. It reads every event
// once, so it costs as much as the topic is large.
func ListPending(ctx context.Context, brokers []string, opts []kgo.Opt, events string, reg *topology.Registry) ([]PendingTransfer, error) {
	base := append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)
	admCl, err := kgo.NewClient(base...)
	if err != nil {
		return nil, fmt.Errorf("saga: client: %w", err)
	}
	defer admCl.Close()
	// Under read_committed the end to reach is the last stable offset.
	ends, err := kadm.NewClient(admCl).ListCommittedOffsets(ctx, events)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("saga: list offsets of %q: %w", events, err)
	}
	want := map[int32]int64{}
	start := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			start[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	type key struct {
		source string
		seq    int64
		id     string
	}
	pending := map[key]*PendingTransfer{}
	byDebit := map[[2]any]key{}
	if len(want) > 0 {
		cl, err := kgo.NewClient(append(base,
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{events: start}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			// Transaction markers come too: the record at the last stable
			// offset minus one is then always delivered, whatever was
			// aborted before it.
			kgo.KeepControlRecords())...)
		if err != nil {
			return nil, fmt.Errorf("saga: client: %w", err)
		}
		defer cl.Close()
		for len(want) > 0 {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			fs.EachError(func(t string, p int32, e error) { err = fmt.Errorf("saga: read %s[%d]: %w", t, p, e) })
			if err != nil {
				return nil, err
			}
			fs.EachRecord(func(r *kgo.Record) {
				end, ok := want[r.Partition]
				if !ok || r.Offset >= end {
					return
				}
				if r.Offset >= end-1 {
					delete(want, r.Partition)
				}
				if r.Attrs.IsControl() {
					return
				}
				env, evs, err := reg.DecodeEvents(r.Value)
				if err != nil || env.AggregateType != account.Name {
					return
				}
				for _, ev := range evs {
					switch e := ev.(type) {
					case account.TransferDebited:
						k := key{env.AggregateID, e.Seq, e.TransferID}
						pending[k] = &PendingTransfer{Source: env.AggregateID, Seq: e.Seq, DebitVersion: env.Version, TransferID: e.TransferID,
							Target: e.To, Amount: e.Amount, State: StateDebited, Debited: time.UnixMilli(env.TimestampMillis)}
						byDebit[[2]any{env.AggregateID, env.Version}] = k
					case account.TransferCredited:
						if p := pending[byDebit[[2]any{e.From, e.DebitVersion}]]; p != nil {
							p.State = StateCredited
						}
					case account.TransferCreditRefused:
						if p := pending[byDebit[[2]any{e.From, e.DebitVersion}]]; p != nil {
							p.State = StateRefused
						}
					case account.TransferCompleted:
						delete(pending, key{env.AggregateID, e.Seq, e.TransferID})
					case account.TransferRefunded:
						delete(pending, key{env.AggregateID, e.Seq, e.TransferID})
					}
				}
			})
		}
	}
	out := make([]PendingTransfer, 0, len(pending))
	for _, p := range pending {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b PendingTransfer) int { return a.Debited.Compare(b.Debited) })
	return out, nil
}
