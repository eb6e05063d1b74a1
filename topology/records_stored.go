package topology

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/wire"
)

// Snapshots, events and replies: the records kcqrs writes, encoded from and
// decoded into domain values (commands are in records.go).

// snapshotKey is the changelog and store key of an aggregate. Aggregate type
// names cannot contain '/', so the key is unambiguous.
func snapshotKey(aggregateType, aggregateID string) string {
	return aggregateType + "/" + aggregateID
}

// StateSchemaError is a snapshot whose state was written with a schema the
// current state schema and upcasters cannot read (or with no known schema at
// all). The snapshot envelope was readable, so the aggregate is known: its
// state can be rebuilt from its events (Registry.ReplayState); the
// processor's store can be rebuilt from the changelog and events with the
// steps in the README ("Changing your schemas").
type StateSchemaError struct {
	Key           string
	AggregateType string
	AggregateID   string
	Version       int64 // the aggregate version the snapshot was at
	Err           error

	recent []wire.RecentCommand // kept across a rebuild, for dedupe
}

func (e *StateSchemaError) Error() string {
	return fmt.Sprintf("snapshot %q: state of %s %q at version %d is unreadable (rebuild it from its events): %v",
		e.Key, e.AggregateType, e.AggregateID, e.Version, e.Err)
}

func (e *StateSchemaError) Unwrap() error { return e.Err }

func (r *Registry) decodeSnapshot(key string, value []byte) (*aggState, error) {
	value, err := r.unframe(value)
	if err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", key, err)
	}
	s, items, err := r.fast.decodeSnapshot(value)
	if errors.Is(err, errSnapshotSchema) {
		err = r.snapshot.Decode(value, &s)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", key, err)
	}
	bt := r.types[s.AggregateType]
	if bt == nil {
		return nil, fmt.Errorf("snapshot %q: unknown aggregate type %q", key, s.AggregateType)
	}
	ptr, err := bt.decodeStatePtr(s.State)
	if err != nil {
		return nil, &StateSchemaError{Key: key, AggregateType: s.AggregateType, AggregateID: s.AggregateID, Version: s.Version, Err: err, recent: s.Recent}
	}
	// Opened in place, before the state is boxed: no copy of it.
	if err := r.open(subjectOf(s.AggregateType, s.AggregateID), ptr); err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", key, err)
	}
	state := ptr.Elem().Interface()
	return &aggState{key: key, id: s.AggregateID, bt: bt, version: s.Version, state: state, recent: s.Recent, recentEnc: items}, nil
}

// decodeState reads a state written with any known version of the state
// schema: the current one directly, older ones by resolution and upcasters.
func (bt *boundType) decodeState(data []byte) (any, error) {
	ptr, err := bt.decodeStatePtr(data)
	if err != nil {
		return nil, err
	}
	return ptr.Elem().Interface(), nil
}

// decodeStatePtr is decodeState returning a pointer to the state.
func (bt *boundType) decodeStatePtr(data []byte) (reflect.Value, error) {
	ptr := reflect.New(bt.stateType)
	if fp, err := schemas.Fingerprint(data); err == nil && fp == bt.state.Fingerprint() {
		if err := bt.state.Decode(data, ptr.Interface()); err != nil {
			return reflect.Value{}, err
		}
		return ptr, nil
	}
	recs, err := bt.upcast.Decode(data)
	if err != nil {
		return reflect.Value{}, err
	}
	if len(recs) != 1 || recs[0].Name != bt.state.ShortName() {
		names := make([]string, len(recs))
		for i, rec := range recs {
			names[i] = rec.Name
		}
		return reflect.Value{}, fmt.Errorf("state upcast to %v, want one %s", names, bt.state.ShortName())
	}
	if err := bt.state.FromNative(recs[0].Fields, ptr.Interface()); err != nil {
		return reflect.Value{}, err
	}
	return ptr, nil
}

// decodeEvents reads an event payload written with any known version of the
// aggregate type's event schemas. The current schema of eventType is read
// directly; anything else goes through resolution and upcasters, which may
// turn one stored event into several (a split) or none.
func (bt *boundType) decodeEvents(eventType string, payload []byte) ([]aggregates.Event, error) {
	if msg := bt.events[eventType]; msg != nil {
		if fp, err := schemas.Fingerprint(payload); err == nil && fp == msg.codec.Fingerprint() {
			ptr := reflect.New(msg.typ)
			if err := msg.codec.Decode(payload, ptr.Interface()); err != nil {
				return nil, fmt.Errorf("event %s: %w", eventType, err)
			}
			return []aggregates.Event{msg.event(ptr)}, nil
		}
	}
	// The envelope names the event; the payload's writer schema must be that
	// record (at some version). Only upcasters may turn it into another.
	if fp, err := schemas.Fingerprint(payload); err == nil {
		if w, ok := bt.upcast.Set().ByFingerprint(fp); ok && w.ShortName() != eventType {
			return nil, fmt.Errorf("event %s: the payload is a %s record", eventType, w.ShortName())
		}
	}
	recs, err := bt.upcast.Decode(payload)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", eventType, err)
	}
	out := make([]aggregates.Event, 0, len(recs))
	for _, rec := range recs {
		msg := bt.events[rec.Name]
		if msg == nil {
			return nil, fmt.Errorf("event %s: read as %s v%d, which is not an event of aggregate type %q", eventType, rec.Name, rec.Version, bt.handler.AggregateType())
		}
		ptr := reflect.New(msg.typ)
		if err := msg.codec.FromNative(rec.Fields, ptr.Interface()); err != nil {
			return nil, fmt.Errorf("event %s: %w", eventType, err)
		}
		out = append(out, msg.event(ptr))
	}
	return out, nil
}

func (msg *boundMessage) event(ptr reflect.Value) aggregates.Event {
	v := ptr
	if !msg.ptr {
		v = ptr.Elem()
	}
	e, _ := v.Interface().(aggregates.Event)
	return e
}

func (r *Registry) encodeSnapshot(a *aggState) ([]byte, error) {
	if a.snap != nil {
		enc := a.snap
		a.snap = nil // a.encoded keeps it from here
		return enc, nil
	}
	return r.encodeSnapshotFresh(a)
}

// encodeSnapshotFresh encodes a's snapshot, ignoring a.snap.
func (r *Registry) encodeSnapshotFresh(a *aggState) ([]byte, error) {
	return r.encodeSnapshotFreshEntry(a, nil)
}

// encodeSnapshotFreshEntry is encodeSnapshotFresh sealing with ent, a's
// keyring entry (nil: looked up).
func (r *Registry) encodeSnapshotFreshEntry(a *aggState, ent *shred.Entry) ([]byte, error) {
	state, err := r.encodeSealed(a.bt.state, ent, a.key, a.state)
	if err != nil {
		return nil, fmt.Errorf("state of %q: %w", a.key, err)
	}
	return r.encodeSnapshotEnvelope(a.bt.handler.AggregateType(), a, state)
}

// encodeSnapshotEnvelope wraps an encoded state into a's snapshot, reusing
// the encodings of the remembered commands when they are in step.
func (r *Registry) encodeSnapshotEnvelope(aggregateType string, a *aggState, state []byte) ([]byte, error) {
	s := wire.Snapshot{
		AggregateType: aggregateType,
		AggregateID:   a.id,
		Version:       a.version,
		State:         state,
		Recent:        a.recent,
	}
	var out []byte
	switch {
	case len(a.recentEnc) == len(a.recent) && (a.recentEnc != nil || len(a.recent) == 0):
		out = r.fast.encodeSnapshotItems(&s, a.recentEnc)
	default:
		enc, ok := r.fast.encodeSnapshot(&s)
		if !ok {
			var err error
			if enc, err = r.snapshot.Encode(s); err != nil {
				return nil, err
			}
		}
		out = enc
	}
	return r.frame(out)
}

func (r *Registry) encodeEvent(a *aggState, version int64, commandID string, ts time.Time, e aggregates.Event) ([]byte, error) {
	msg := a.bt.events[e.EventType()]
	if msg == nil {
		return nil, fmt.Errorf("event type %q is not listed in aggregate type %q", e.EventType(), a.bt.handler.AggregateType())
	}
	payload, err := r.encodeSealed(msg.codec, nil, a.key, e)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", e.EventType(), err)
	}
	out := r.fast.encodeEvent(&wire.Event{
		AggregateType:   a.bt.handler.AggregateType(),
		AggregateID:     a.id,
		Version:         version,
		EventType:       e.EventType(),
		CommandID:       commandID,
		TimestampMillis: ts.UnixMilli(),
		Payload:         payload,
	})
	return r.frame(out)
}

// schemaRegistryTimeout bounds one schema registry call outside a
// transaction (a schema's first use only: ids are cached).
const schemaRegistryTimeout = 10 * time.Second

// frame turns a single-object encoded envelope into the configured wire
// format. The payload inside an event envelope stays single-object encoded:
// it is bytes to the envelope's schema. It runs inside the transaction, after
// prepareSchemas registered the envelopes (schemaprep.go): a registry call
// here is an unexpected miss, bounded by schemaRegistryTxnTimeout.
func (r *Registry) frame(data []byte) ([]byte, error) {
	if r.confluent == nil {
		return data, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), schemaRegistryTxnTimeout)
	defer cancel()
	return r.confluent.FromSingleObject(ctx, data)
}

// unframe turns a value in the Confluent wire format into the single-object
// encoding when a schema registry is configured; other values pass as they
// are.
func (r *Registry) unframe(data []byte) ([]byte, error) {
	return r.unframeWithin(data, schemaRegistryTimeout)
}

// unframeWithin is unframe with a bound on the registry call.
func (r *Registry) unframeWithin(data []byte, within time.Duration) ([]byte, error) {
	if r.confluent == nil || !schemas.IsConfluent(data) {
		return data, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return r.confluent.ToSingleObject(ctx, data)
}

// DecodeEvent decodes an events-topic value into its envelope and the
// aggregate's Go event value. Events written with older schema versions are
// resolved and upcast; one that upcasts to other than exactly one event is an
// error here (use DecodeEvents).
func (r *Registry) DecodeEvent(value []byte) (wire.Event, aggregates.Event, error) {
	env, bt, err := r.decodeEventEnvelope(value)
	if err != nil {
		return env, nil, err
	}
	// The common case, an event in its current schema: no slice, and its
	// personal fields opened in the value decoded (DecodeEvents opens a
	// copy), nor a subject built when sealing is off (the projector's
	// catch-up decodes every event here).
	if msg := bt.events[env.EventType]; msg != nil {
		if fp, ferr := schemas.Fingerprint(env.Payload); ferr == nil && fp == msg.codec.Fingerprint() {
			ptr := reflect.New(msg.typ)
			if err := msg.codec.Decode(env.Payload, ptr.Interface()); err != nil {
				return env, nil, fmt.Errorf("topology: event %s: %w", env.EventType, err)
			}
			if r.shred != nil {
				if err := r.open(subjectOf(env.AggregateType, env.AggregateID), ptr); err != nil {
					return env, nil, fmt.Errorf("topology: event %s of %s %q: %w", env.EventType, env.AggregateType, env.AggregateID, err)
				}
			}
			return env, msg.event(ptr), nil
		}
	}
	events, err := r.decodeEventsOf(env, bt)
	if err != nil {
		return env, nil, err
	}
	if len(events) != 1 {
		return env, nil, fmt.Errorf("topology: event %s of %s %q at version %d upcasts to %d events; use DecodeEvents",
			env.EventType, env.AggregateType, env.AggregateID, env.Version, len(events))
	}
	return env, events[0], nil
}

// DecodeEvents decodes an events-topic value into its envelope and the
// aggregate's current Go event values: usually one, but an upcaster may
// split an old event in two or drop it. All of them carry the envelope's
// aggregate version.
func (r *Registry) DecodeEvents(value []byte) (wire.Event, []aggregates.Event, error) {
	env, bt, err := r.decodeEventEnvelope(value)
	if err != nil {
		return env, nil, err
	}
	events, err := r.decodeEventsOf(env, bt)
	return env, events, err
}

// decodeEventEnvelope decodes an events-topic value's envelope and finds
// its aggregate type.
func (r *Registry) decodeEventEnvelope(value []byte) (wire.Event, *boundType, error) {
	value, err := r.unframe(value)
	if err != nil {
		return wire.Event{}, nil, fmt.Errorf("topology: event envelope: %w", err)
	}
	env, ok := r.fast.decodeEvent(value, r.names)
	if !ok {
		// Its own variable: one whose address goes into the generic
		// codec's interface is on the heap, and env then would be on every
		// call.
		var g wire.Event
		err := r.event.Decode(value, &g)
		if env = g; err != nil {
			return env, nil, fmt.Errorf("topology: event envelope: %w", err)
		}
	}
	bt := r.types[env.AggregateType]
	if bt == nil {
		return env, nil, fmt.Errorf("topology: event: unknown aggregate type %q", env.AggregateType)
	}
	return env, bt, nil
}

// decodeEventsOf decodes env's payload into the aggregate's current events
// and opens their personal fields.
func (r *Registry) decodeEventsOf(env wire.Event, bt *boundType) ([]aggregates.Event, error) {
	events, err := bt.decodeEvents(env.EventType, env.Payload)
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	if r.shred == nil {
		return events, nil // nothing is sealed: no subject to build per event
	}
	for i, e := range events {
		opened, err := r.openValue(subjectOf(env.AggregateType, env.AggregateID), e)
		if err != nil {
			return nil, fmt.Errorf("topology: event %s of %s %q: %w", env.EventType, env.AggregateType, env.AggregateID, err)
		}
		events[i], _ = opened.(aggregates.Event)
	}
	return events, nil
}

// ReplayState folds an aggregate's events, as read from the events topic
// (values in order), into its state and version: how a state whose snapshot
// is unreadable (a *StateSchemaError) is rebuilt. Every value must belong to
// the given aggregate; versions must run 1, 2, 3, ... without gaps.
func (r *Registry) ReplayState(aggregateType, aggregateID string, values [][]byte) (state any, version int64, err error) {
	bt := r.types[aggregateType]
	if bt == nil {
		return nil, 0, fmt.Errorf("topology: replay: unknown aggregate type %q", aggregateType)
	}
	state = bt.handler.InitialState()
	for i, value := range values {
		env, events, err := r.DecodeEvents(value)
		if err != nil {
			return nil, 0, fmt.Errorf("topology: replay %s %q, value %d: %w", aggregateType, aggregateID, i, err)
		}
		if env.AggregateType != aggregateType || env.AggregateID != aggregateID {
			return nil, 0, fmt.Errorf("topology: replay %s %q: value %d belongs to %s %q", aggregateType, aggregateID, i, env.AggregateType, env.AggregateID)
		}
		if env.Version != version+1 {
			return nil, 0, fmt.Errorf("topology: replay %s %q: event version %d after %d (a gap or a duplicate)", aggregateType, aggregateID, env.Version, version)
		}
		for _, e := range events {
			state = bt.handler.ApplyEvent(state, e)
		}
		version = env.Version
	}
	return state, version, nil
}

// DecodeSnapshot decodes a changelog value into its envelope and the
// aggregate's Go state value.
func (r *Registry) DecodeSnapshot(value []byte) (wire.Snapshot, any, error) {
	a, err := r.decodeSnapshot("", value)
	if err != nil {
		return wire.Snapshot{}, nil, fmt.Errorf("topology: %w", err)
	}
	return wire.Snapshot{AggregateType: a.bt.handler.AggregateType(), AggregateID: a.id, Version: a.version, Recent: a.recent}, a.state, nil
}

// EncodeReply encodes a reply in the given content type.
func (r *Registry) EncodeReply(reply wire.Reply, contentType string) ([]byte, error) {
	if contentType == wire.ContentTypeJSON {
		if enc, ok := r.fast.encodeReplyJSON(&reply); ok {
			return enc, nil
		}
		return r.reply.EncodeJSON(reply)
	}
	if enc, ok := r.fast.encodeReply(&reply); ok {
		return enc, nil
	}
	return r.reply.Encode(reply)
}

// DecodeReply decodes a reply of the given content type.
func (r *Registry) DecodeReply(value []byte, contentType string) (wire.Reply, error) {
	var rep wire.Reply
	var err error
	if contentType == wire.ContentTypeJSON {
		err = r.reply.DecodeJSON(value, &rep)
	} else {
		err = r.reply.Decode(value, &rep)
	}
	return rep, err
}
