package topologytest

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/wire"
)

// WaitClient returns a request/reply client for cfg, trying again every
// 100ms until ctx ends: a client started beside a worker may find the
// topics not created yet, or (on a secured broker) its ACLs not yet in
// force. The error is the last attempt's, once ctx has ended.
func WaitClient(ctx context.Context, cfg client.Config) (*client.Client, error) {
	for {
		cl, err := client.New(ctx, cfg)
		if err == nil {
			return cl, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// EventTypes reads the committed records of topic (ReadCommitted) and
// returns the event types (header wire.HeaderEventType) among them.
func EventTypes(ctx context.Context, brokers []string, topic string, opts ...kgo.Opt) (map[string]bool, error) {
	recs, err := ReadCommitted(ctx, brokers, topic, opts...)
	if err != nil {
		return nil, err
	}
	types := map[string]bool{}
	for _, r := range recs {
		for _, h := range r.Headers {
			if h.Key == wire.HeaderEventType {
				types[string(h.Value)] = true
			}
		}
	}
	return types, nil
}

// StartTransfer sends through cl the commands of the smallest transfer,
// each of which must be accepted: accounts a and b opened (EUR), 100
// deposited to a, then 30 debited from a for b (transfer t1). The saga
// credits b and completes it.
func StartTransfer(ctx context.Context, cl *client.Client) error {
	for _, c := range []struct{ id, typ, data string }{
		{"a", "OpenAccount", `{"owner":"A","currency":"EUR"}`},
		{"a", "Deposit", `{"amount":100}`},
		{"b", "OpenAccount", `{"owner":"B","currency":"EUR"}`},
		{"a", "DebitForTransfer", `{"transferId":"t1","to":"b","amount":30}`},
	} {
		rep, err := cl.Send(ctx, client.Command{AggregateType: "account", AggregateID: c.id, Type: c.typ, JSON: []byte(c.data)})
		if err != nil || rep.Status != wire.StatusAccepted {
			return fmt.Errorf("%s %s: %+v %v", c.typ, c.id, rep, err)
		}
	}
	return nil
}
