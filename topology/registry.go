package topology

import (
	"errors"
	"fmt"
	"reflect"
	"sort"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/wire"
)

// Registry holds the aggregate types a processor serves, each bound to its
// Avro schemas. Registering a type needs nothing from this package but the
// type and its schemas: the runtime is generic over aggregates.
type Registry struct {
	envelopes *schemas.Set
	reply     *schemas.Codec
	event     *schemas.Codec
	snapshot  *schemas.Codec
	fast      *envelopeCodec // hand-written encoding of the three above
	types     map[string]*boundType
}

type boundType struct {
	handler   aggregates.Handler
	state     *schemas.Codec
	stateType reflect.Type
	commands  map[string]*boundMessage // by command type
	byPrint   map[uint64]*boundMessage // commands by schema fingerprint
	events    map[string]*boundMessage // by event type
}

type boundMessage struct {
	name  string
	codec *schemas.Codec
	typ   reflect.Type // the Go type of the prototype (a struct type)
	ptr   bool         // the prototype is a pointer to it
}

// NewRegistry returns an empty registry using the built-in envelope schemas.
func NewRegistry() (*Registry, error) {
	env, err := schemas.LoadEnvelopes()
	if err != nil {
		return nil, fmt.Errorf("topology: envelopes: %w", err)
	}
	r := &Registry{envelopes: env, types: map[string]*boundType{}}
	for _, b := range []struct {
		dst  **schemas.Codec
		name string
		typ  any
	}{
		{&r.reply, "kcqrs.Reply", wire.Reply{}},
		{&r.event, "kcqrs.Event", wire.Event{}},
		{&r.snapshot, "kcqrs.Snapshot", wire.Snapshot{}},
	} {
		c, err := env.Codec(b.name)
		if err != nil {
			return nil, fmt.Errorf("topology: envelopes: %w", err)
		}
		if err := c.Bind(reflect.TypeOf(b.typ)); err != nil {
			return nil, fmt.Errorf("topology: envelopes: %w", err)
		}
		*b.dst = c
	}
	r.fast = newEnvelopeCodec(r.reply, r.event, r.snapshot)
	return r, nil
}

// Register binds an aggregate type to its schemas: one record per command and
// event, named by its CommandType/EventType, and one for the state, named like
// the state's Go type. Every mismatch is reported at once.
func (r *Registry) Register(h aggregates.Handler, set *schemas.Set) error {
	if v, ok := h.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	name := h.AggregateType()
	if _, dup := r.types[name]; dup {
		return fmt.Errorf("topology: aggregate type %q registered twice", name)
	}
	bt := &boundType{
		handler:  h,
		commands: map[string]*boundMessage{},
		byPrint:  map[uint64]*boundMessage{},
		events:   map[string]*boundMessage{},
	}
	var errs []error
	bind := func(kind, msgName string, proto any) *boundMessage {
		t := reflect.TypeOf(proto)
		if t == nil {
			errs = append(errs, fmt.Errorf("%s %q: nil prototype", kind, msgName))
			return nil
		}
		m := &boundMessage{name: msgName, typ: t}
		if t.Kind() == reflect.Pointer {
			m.typ, m.ptr = t.Elem(), true
		}
		c, err := set.Codec(msgName)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", kind, msgName, err))
			return nil
		}
		if err := c.Bind(m.typ); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", kind, msgName, err))
			return nil
		}
		m.codec = c
		return m
	}
	for _, c := range h.CommandPrototypes() {
		if m := bind("command", c.CommandType(), c); m != nil {
			bt.commands[m.name] = m
			bt.byPrint[m.codec.Fingerprint()] = m
		}
	}
	for _, e := range h.EventPrototypes() {
		if m := bind("event", e.EventType(), e); m != nil {
			bt.events[m.name] = m
		}
	}
	st := reflect.TypeOf(h.InitialState())
	if st == nil || st.Kind() != reflect.Struct {
		errs = append(errs, fmt.Errorf("state type %v is not a struct", st))
	} else if m := bind("state", st.Name(), h.InitialState()); m != nil {
		bt.state, bt.stateType = m.codec, m.typ
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("topology: aggregate type %q: %w", name, err)
	}
	r.types[name] = bt
	return nil
}

// AggregateTypes lists the registered aggregate type names, sorted.
func (r *Registry) AggregateTypes() []string { return sortedKeys(r.types) }

// CommandTypes lists the command type names of one aggregate type, sorted.
func (r *Registry) CommandTypes(aggregateType string) []string {
	if bt := r.types[aggregateType]; bt != nil {
		return sortedKeys(bt.commands)
	}
	return nil
}

// EventTypes lists the event type names of one aggregate type, sorted.
func (r *Registry) EventTypes(aggregateType string) []string {
	if bt := r.types[aggregateType]; bt != nil {
		return sortedKeys(bt.events)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
