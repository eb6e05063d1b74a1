// Package aggregates is the domain contract of kcqrs: what an aggregate is, as
// seen by the command processor.
//
// An aggregate is a consistency boundary identified by a key (the Kafka record
// key of its commands). Its history is a sequence of events; its state is the
// left fold of those events. An aggregate type is described by a Type[S] over
// its own state type S:
//
//   - Decide(state, command) validates one command against the current state
//     and returns the events it causes, or a *Rejection when a business rule
//     refuses it. Decide does not change anything itself.
//   - Evolve(state, event) applies one event and returns the new state. It is
//     used both after Decide (for the new events) and when rebuilding state.
//
// Both must be pure: no I/O, no clocks, no randomness, and no mutation of the
// state passed in (S is passed by value, but slices, maps and pointers inside
// it are shared with the runtime's cached copy). Anything time or
// environment dependent belongs in the command, chosen by the sender.
//
// The runtime, not the domain, counts versions: an aggregate's version is the
// number of events it has, so a command that emits two events raises it by
// two, and a rejected command leaves it unchanged. Optimistic concurrency
// (expected versions), command deduplication and snapshots are the runtime's
// business too; a domain package never imports Kafka, Pebble or Avro.
//
// Rejections are typed: Decide returns a *Rejection (see Reject) whose Code is
// a stable, machine-readable string that clients may switch on (such as
// "insufficient_funds"), and whose Message is for humans. Any other error from
// Decide is an internal error, reported as such. Commands of a type Decide
// does not know are rejected with CodeUnknownCommand.
//
// Commands and events are plain Go structs whose avro struct tags name their
// Avro record fields; CommandType and EventType return their stable wire
// names. The packages account and folder are two complete aggregate types,
// and aggtest is a given/when/then fixture for testing any aggregate type.
package aggregates
