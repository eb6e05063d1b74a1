package topology

import (
	"errors"
	"fmt"
	"reflect"
	"sort"

	"github.com/twmb/franz-go/pkg/sr"

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
	// names holds every registered aggregate and event type name, so that
	// decoding an event envelope reuses them (envelopeCodec.decodeEvent).
	names map[string]string
	sets  []*schemas.Set // the envelopes and every registered type's
	// confluent, when set, writes events and snapshots in the Confluent
	// Schema Registry wire format (see UseSchemaRegistry).
	confluent *schemas.Confluent
	// shred seals personal fields (personal.go); nil: off.
	shred *shredding
}

type boundType struct {
	reg       *Registry
	handler   aggregates.Handler
	state     *schemas.Codec
	stateType reflect.Type
	commands  map[string]*boundMessage // by command type
	byPrint   map[uint64]*boundMessage // commands by schema fingerprint
	events    map[string]*boundMessage // by event type
	// upcast reads events and states written with any version of the
	// aggregate type's schemas (see schemas.Upcasting).
	upcast *schemas.Upcasting
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
	r := &Registry{envelopes: env, types: map[string]*boundType{}, sets: []*schemas.Set{env}}
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
//
// Older versions of the records (the set's history/ files) are read by Avro
// schema resolution; ups are the aggregate type's upcasters for the changes
// resolution cannot express (an event renamed or split, a field whose meaning
// changed), applied when events and snapshots are read. Register refuses a
// set whose old versions the current schemas and upcasters cannot read
// (schemas.Upcasting.Check), so a processor never starts with history it
// would choke on. Upcasters live with the schemas rather than in aggregates/
// because they work on Avro records of versions the domain's Go types no
// longer describe; the domain only ever sees current values.
func (r *Registry) Register(h aggregates.Handler, set *schemas.Set, ups ...schemas.Upcaster) error {
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
		reg:      r,
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
			// Older versions of a command decode by resolution, so a client
			// still on an old schema is served.
			vs, _ := set.Versions(m.codec.Name())
			for _, v := range vs {
				bt.byPrint[v.Fingerprint()] = m
			}
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
	if u, err := set.Upcasting(ups...); err != nil {
		errs = append(errs, err)
	} else if err := u.Check(); err != nil {
		errs = append(errs, fmt.Errorf("old schema versions would be unreadable:\n%w", err))
	} else {
		bt.upcast = u
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("topology: aggregate type %q: %w", name, err)
	}
	r.types[name] = bt
	if r.names == nil {
		r.names = map[string]string{}
	}
	r.names[name] = name
	for et := range bt.events {
		r.names[et] = et
	}
	r.sets = append(r.sets, set)
	return nil
}

// UseSchemaRegistry makes the registry write events and snapshots in the
// Confluent Schema Registry wire format (magic byte 0, 4-byte schema id),
// registering each schema under its record name on first use, so tools that
// speak only that format can read the topics. Reading accepts both formats,
// so a topic can switch. Commands may come in either format; replies stay in
// the single-object encoding the client expects. Call it before the
// registry is used, after every Register. Config.SchemaRegistryURLs does it
// for a processor.
func (r *Registry) UseSchemaRegistry(cl *sr.Client) error {
	all, err := schemas.Merge(r.sets...)
	if err != nil {
		return fmt.Errorf("topology: schema registry: %w", err)
	}
	r.confluent = schemas.NewConfluent(cl, all)
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
