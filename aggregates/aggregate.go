package aggregates

import (
	"errors"
	"fmt"
)

// Command is a request to change one aggregate. CommandType is its stable wire
// name: the value of the command-type header and the name of its Avro record.
type Command interface {
	CommandType() string
}

// Event is a fact that happened to one aggregate. EventType is its stable wire
// name and the name of its Avro record.
type Event interface {
	EventType() string
}

// RefusedWhenErased is implemented by a command a process manager may still
// send to an aggregate after its personal data was erased (a transfer's
// credit): the runtime records the event it returns instead of the events
// Decide accepted, so that the process ends as it does for any refusal (a
// transfer is refunded) instead of waiting forever. Decide still runs first:
// its rejections (a credit decided already) stand.
type RefusedWhenErased interface {
	Command
	RefusedWhenErased() Event
}

// Rejection is a business-rule refusal returned by Decide. The runtime turns it
// into a "rejected" reply carrying Code (stable, machine readable) and Message
// (for humans). Any other error from Decide is an internal error.
type Rejection struct {
	Code    string
	Message string
}

func (r *Rejection) Error() string { return r.Code + ": " + r.Message }

// Reject builds a *Rejection with a formatted message.
func Reject(code, format string, args ...any) *Rejection {
	return &Rejection{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsRejection reports whether err is (or wraps) a *Rejection.
func AsRejection(err error) (*Rejection, bool) {
	var r *Rejection
	ok := errors.As(err, &r)
	return r, ok
}

// Type describes one aggregate type over its own state type S. Decide and
// Evolve must be pure: no I/O, no clocks, no randomness, so that replaying the
// same events always yields the same state.
type Type[S any] struct {
	// Name is the aggregate type's wire name (the aggregate-type header).
	Name string
	// Initial returns the state of an aggregate that has no events yet.
	// Nil means the zero value of S.
	Initial func() S
	// Decide validates cmd against state and returns the events it causes,
	// or a *Rejection. It must not mutate state.
	Decide func(state S, cmd Command) ([]Event, error)
	// Evolve applies one event to state and returns the new state.
	Evolve func(state S, event Event) S
	// Commands and Events list one zero value of every command and event
	// type, so the runtime can decode them by name.
	Commands []Command
	Events   []Event
}

// Handler is the type-erased view of a Type[S] that the runtime works with.
// States are passed as values of type S boxed in any.
type Handler interface {
	AggregateType() string
	InitialState() any
	HandleCommand(state any, cmd Command) ([]Event, error)
	ApplyEvent(state any, event Event) any
	CommandPrototypes() []Command
	EventPrototypes() []Event
}

// AggregateType implements Handler.
func (t Type[S]) AggregateType() string { return t.Name }

// InitialState implements Handler.
func (t Type[S]) InitialState() any {
	if t.Initial == nil {
		var zero S
		return zero
	}
	return t.Initial()
}

// HandleCommand implements Handler.
func (t Type[S]) HandleCommand(state any, cmd Command) ([]Event, error) {
	s, ok := state.(S)
	if !ok {
		return nil, fmt.Errorf("aggregates: %s: state has type %T, want %T", t.Name, state, s)
	}
	return t.Decide(s, cmd)
}

// ApplyEvent implements Handler.
func (t Type[S]) ApplyEvent(state any, event Event) any {
	return t.Evolve(state.(S), event)
}

// CommandPrototypes implements Handler.
func (t Type[S]) CommandPrototypes() []Command { return t.Commands }

// EventPrototypes implements Handler.
func (t Type[S]) EventPrototypes() []Event { return t.Events }

// Validate reports every problem of the definition at once.
func (t Type[S]) Validate() error {
	var errs []error
	if t.Name == "" {
		errs = append(errs, errors.New("aggregates: type has no Name"))
	}
	if t.Decide == nil {
		errs = append(errs, fmt.Errorf("aggregates: %s: Decide is nil", t.Name))
	}
	if t.Evolve == nil {
		errs = append(errs, fmt.Errorf("aggregates: %s: Evolve is nil", t.Name))
	}
	seen := map[string]bool{}
	for _, c := range t.Commands {
		if seen["c/"+c.CommandType()] {
			errs = append(errs, fmt.Errorf("aggregates: %s: command %q listed twice", t.Name, c.CommandType()))
		}
		seen["c/"+c.CommandType()] = true
	}
	for _, e := range t.Events {
		if seen["e/"+e.EventType()] {
			errs = append(errs, fmt.Errorf("aggregates: %s: event %q listed twice", t.Name, e.EventType()))
		}
		seen["e/"+e.EventType()] = true
	}
	return errors.Join(errs...)
}
