package topology

import (
	"context"
	"fmt"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/shred"
)

// HistorySource reads one aggregate's events without scanning a partition
// (package history implements it with an index of the events topic).
type HistorySource interface {
	// EventValues returns the values of the aggregate's committed events
	// with versions 1..upTo on partition part of the events topic, in
	// version order, read_committed.
	EventValues(ctx context.Context, aggregateType, aggregateID string, part int32, upTo int64) ([][]byte, error)
}

// rebuildFromHistory replays an aggregate through Config.History. It
// reports ok=false (and why) when it cannot give exactly the snapshot's
// version, so that the caller falls back to the partition scan: an index
// that lags or misses a record must never produce a different state.
func (p *Processor) rebuildFromHistory(ctx context.Context, ps *partitionState, se *StateSchemaError) (state any, values int, ok bool, why error) {
	vals, err := p.cfg.History.EventValues(ctx, se.AggregateType, se.AggregateID, ps.p, se.Version)
	if err != nil {
		return nil, 0, false, err
	}
	state, version, err := p.reg.ReplayState(se.AggregateType, se.AggregateID, vals)
	if err != nil {
		return nil, 0, false, err
	}
	if version != se.Version {
		return nil, 0, false, fmt.Errorf("the history has the aggregate at version %d", version)
	}
	return state, len(vals), true, nil
}

// EventJSON returns an event value (as DecodeEvents gives it) of the given
// aggregate type in Avro's JSON encoding of its current schema: how the
// history endpoints show payloads.
func (r *Registry) EventJSON(aggregateType string, e aggregates.Event) ([]byte, error) {
	bt := r.types[aggregateType]
	if bt == nil {
		return nil, fmt.Errorf("topology: unknown aggregate type %q", aggregateType)
	}
	msg := bt.events[e.EventType()]
	if msg == nil {
		return nil, fmt.Errorf("topology: event type %q is not listed in aggregate type %q", e.EventType(), aggregateType)
	}
	return msg.codec.EncodeJSON(e)
}

// StateJSON returns a state value of the given aggregate type in Avro's
// JSON encoding of its current schema.
func (r *Registry) StateJSON(aggregateType string, state any) ([]byte, error) {
	bt := r.types[aggregateType]
	if bt == nil {
		return nil, fmt.Errorf("topology: unknown aggregate type %q", aggregateType)
	}
	return bt.state.EncodeJSON(state)
}

// WithKeyring returns a copy of r that opens (and seals) personal fields
// with the keys of ring; r is unchanged. A reader that is not a processor
// (the history endpoints) decodes with it so that personal fields read as
// the processor's own state has them: the plaintext, or shred.Erased once
// the subject is erased.
func (r *Registry) WithKeyring(ring *shred.Keyring) (*Registry, error) {
	return r.withPersonal(ring)
}
