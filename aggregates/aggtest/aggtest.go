package aggtest

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/kcqrs/kcqrs/aggregates"
)

// TestingT is the part of testing.TB the fixture uses. *testing.T, *testing.B
// and *testing.F implement it. Fatalf is expected not to return (as
// testing.TB's does); if it returns, the fixture skips the remaining steps.
type TestingT interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Fixture is a scenario under construction for one aggregate type: the
// history given so far. Fixtures are immutable: Given and With return new
// ones, so a fixture with a common history can be shared by several tests.
type Fixture[S any] struct {
	t      TestingT
	h      aggregates.Handler
	given  []aggregates.Event
	broken bool // the type is unusable and was reported; skip everything
}

// For returns a fixture for typ, reporting to t. It fails t at once (Fatalf)
// if typ does not pass its Validate.
func For[S any](t TestingT, typ aggregates.Type[S]) *Fixture[S] {
	t.Helper()
	return newFixture[S](t, typ)
}

// ForHandler returns a fixture for any aggregates.Handler, with states as
// values of type any: the view the runtime has. Prefer For when the Type[S]
// is at hand.
func ForHandler(t TestingT, h aggregates.Handler) *Fixture[any] {
	t.Helper()
	return newFixture[any](t, h)
}

func newFixture[S any](t TestingT, h aggregates.Handler) *Fixture[S] {
	t.Helper()
	f := &Fixture[S]{t: t, h: h}
	if h == nil {
		f.broken = true
		t.Fatalf("aggtest: nil aggregate handler")
		return f
	}
	if v, ok := h.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			f.broken = true
			t.Fatalf("aggtest: invalid aggregate type %q:\n%v", h.AggregateType(), err)
		}
	}
	return f
}

// With returns a copy of f that reports to t: the way to use a fixture built
// in a parent test inside t.Run.
func (f *Fixture[S]) With(t TestingT) *Fixture[S] {
	g := *f
	g.t = t
	return &g
}

// Given returns a copy of f whose history is extended by events, oldest
// first. Events are applied with Evolve when When runs.
func (f *Fixture[S]) Given(events ...aggregates.Event) *Fixture[S] {
	g := *f
	g.given = slices.Concat(f.given, events)
	return &g
}

// When folds the history into a state, runs cmd through Decide and records
// the outcome for the Then methods. It reports impure Decide or Evolve
// functions and events of unlisted types (see the package doc).
func (f *Fixture[S]) When(cmd aggregates.Command) *Result[S] {
	f.t.Helper()
	r := &Result[S]{f: f, cmd: cmd}
	if f.broken {
		return r
	}
	n := len(f.given)
	for i, e := range f.given {
		if problem := f.unlisted(e); problem != "" {
			r.errorf("Given", "event #%d: %s", i, problem)
		}
	}
	// Two independent copies of the state before the command: a is given
	// to Decide, b is kept to see whether Decide wrote through a.
	a, b, ok := r.replay(f.given, 0)
	if !ok {
		return r
	}
	// A third copy for the second, determinism-checking call of Decide.
	c, _, ok := r.replay(f.given, n)
	if !ok {
		return r
	}
	// The copies differ only if Evolve is not deterministic, which replay
	// reported; comparing Decide's work on them would then prove nothing.
	copiesEqual := reflect.DeepEqual(a, b) && reflect.DeepEqual(b, c)
	events, err, ok := r.decide(a)
	if !ok {
		return r
	}
	if copiesEqual && !reflect.DeepEqual(a, b) {
		r.errorf("When", "Decide mutated its input state (through a slice, map or pointer it shares with the caller)\n%s",
			diffBlock("state", b, a))
	}
	events2, err2, ok := r.decide(c)
	if !ok {
		return r
	}
	if copiesEqual && !sameOutcome(events, err, events2, err2) {
		r.errorf("When", "Decide is not deterministic: two calls on equal states returned different results\n  first:  %s\n  second: %s",
			outcome(events, err), outcome(events2, err2))
	}
	r.events, r.err = events, err
	if err != nil {
		if len(events) > 0 {
			r.errorf("When", "Decide returned %d event(s) together with an error; the runtime would discard them\n  events: %s\n  error:  %v",
				len(events), eventList(events, "          "), err)
		}
		r.events = nil
	}
	for i, e := range r.events {
		if problem := f.unlisted(e); problem != "" {
			r.errorf("When", "Decide returned event #%d: %s", i, problem)
		}
	}
	after, _, ok := r.replay(slices.Concat(f.given, r.events), n)
	if !ok {
		return r
	}
	r.state = after
	r.done = true
	return r
}

// unlisted explains why the runtime could not encode e, or returns "".
func (f *Fixture[S]) unlisted(e aggregates.Event) string {
	if e == nil {
		return "nil event"
	}
	name := e.EventType()
	for _, p := range f.h.EventPrototypes() {
		if p == nil || p.EventType() != name {
			continue
		}
		if reflect.TypeOf(p) != reflect.TypeOf(e) {
			return fmt.Sprintf("%s is a %T, but the type's Events list a %T under that name", name, e, p)
		}
		return ""
	}
	return fmt.Sprintf("event type %q (%T) is not listed in the type's Events, so the runtime could not encode it", name, e)
}

// Result is the outcome of When, with assertions that report to the
// fixture's TestingT and return the Result for chaining.
type Result[S any] struct {
	f      *Fixture[S]
	cmd    aggregates.Command
	events []aggregates.Event // nil when rejected
	err    error
	state  any  // after the history and events
	done   bool // When completed; otherwise assertions are skipped
}

// Then asserts that the command was accepted and returned exactly want, in
// order, compared with reflect.DeepEqual. Then() with no arguments asserts
// that it was accepted without events.
func (r *Result[S]) Then(want ...aggregates.Event) *Result[S] {
	r.f.t.Helper()
	if !r.done {
		return r
	}
	if r.err != nil {
		r.errorf("Then", "want %d event(s), but the command failed: %s\n  want: %s",
			len(want), describeErr(r.err), eventList(want, "        "))
		return r
	}
	if len(want) == 0 && len(r.events) == 0 {
		return r
	}
	if !reflect.DeepEqual(want, r.events) {
		r.errorf("Then", "events differ\n%s  want: %s\n  got:  %s",
			diffLines("events", want, r.events), eventList(want, "        "), eventList(r.events, "        "))
	}
	return r
}

// ThenReject asserts that Decide returned a *aggregates.Rejection (or an
// error wrapping one) with the given code.
func (r *Result[S]) ThenReject(code string) *Result[S] {
	r.f.t.Helper()
	if !r.done {
		return r
	}
	step := fmt.Sprintf("ThenReject(%q)", code)
	if r.err == nil {
		r.errorf(step, "the command was accepted, want a rejection\n  got: %s", eventList(r.events, "       "))
		return r
	}
	rej, ok := aggregates.AsRejection(r.err)
	if !ok {
		r.errorf(step, "Decide failed with an error that is not a *aggregates.Rejection: %v", r.err)
		return r
	}
	if rej.Code != code {
		r.errorf(step, "rejected with code %q, want %q\n  message: %s", rej.Code, code, rej.Message)
	}
	return r
}

// ThenState asserts the state after the history and the command's events
// (after the history alone if it was rejected), compared with
// reflect.DeepEqual.
func (r *Result[S]) ThenState(want S) *Result[S] {
	r.f.t.Helper()
	if !r.done {
		return r
	}
	got, ok := r.typedState()
	if !ok {
		r.errorf("ThenState", "the state is a %T, want a %T", r.state, want)
		return r
	}
	if !reflect.DeepEqual(want, got) {
		r.errorf("ThenState", "states differ\n%s  want: %s\n  got:  %s",
			diffLines("state", want, got), show(want), show(got))
	}
	return r
}

// ThenVersion asserts the aggregate's version after the command: the number
// of events in the history plus those the command emitted.
func (r *Result[S]) ThenVersion(want int) *Result[S] {
	r.f.t.Helper()
	if !r.done {
		return r
	}
	if got := r.Version(); got != want {
		r.errorf("ThenVersion", "version %d (%d given + %d new events), want %d",
			got, len(r.f.given), len(r.events), want)
	}
	return r
}

// Events returns the events Decide returned (nil if it returned an error).
func (r *Result[S]) Events() []aggregates.Event { return slices.Clone(r.events) }

// Err returns the error Decide returned: nil, a *aggregates.Rejection or an
// internal error.
func (r *Result[S]) Err() error { return r.err }

// State returns the state after the history and the command's events, or the
// zero S if When did not complete.
func (r *Result[S]) State() S {
	s, _ := r.typedState()
	return s
}

// Version returns the number of events in the history plus those the command
// emitted, as the runtime counts versions.
func (r *Result[S]) Version() int { return len(r.f.given) + len(r.events) }

func (r *Result[S]) typedState() (S, bool) {
	if r.state == nil {
		var zero S
		// A nil state is a valid S only if S is an interface type.
		return zero, reflect.TypeFor[S]().Kind() == reflect.Interface
	}
	s, ok := r.state.(S)
	return s, ok
}

// replay folds events into two independent copies of the initial state (two
// folds, so that they share nothing the functions did not share). From event
// index checkFrom on, it reports an Evolve that mutates its input or is not
// deterministic. Events before len(r.f.given) are labelled as given, the
// others as emitted by Decide. ok is false if it called Fatalf.
func (r *Result[S]) replay(events []aggregates.Event, checkFrom int) (a, b any, ok bool) {
	r.f.t.Helper()
	h := r.f.h
	if msg, panicked := protect(func() { a, b = h.InitialState(), h.InitialState() }); panicked {
		r.fatalf("Given", "InitialState panicked: %s", msg)
		return nil, nil, false
	}
	for i, e := range events {
		// Once the copies differ (a nondeterministic Evolve, reported),
		// comparing them says nothing about later events.
		check := i >= checkFrom && reflect.DeepEqual(a, b)
		var na, nb any
		if msg, panicked := protect(func() { na = h.ApplyEvent(a, e) }); panicked {
			r.fatalf(r.stepOf(i), "Evolve panicked applying %s: %s", r.eventLabel(i, e), msg)
			return nil, nil, false
		}
		if check && !reflect.DeepEqual(a, b) {
			r.errorf(r.stepOf(i), "Evolve mutated its input state applying %s\n%s",
				r.eventLabel(i, e), diffBlock("state", b, a))
			check, checkFrom = false, len(events) // report the first one only
		}
		if msg, panicked := protect(func() { nb = h.ApplyEvent(b, e) }); panicked {
			r.fatalf(r.stepOf(i), "Evolve panicked applying %s the second time: %s", r.eventLabel(i, e), msg)
			return nil, nil, false
		}
		if check && !reflect.DeepEqual(na, nb) {
			r.errorf(r.stepOf(i), "Evolve is not deterministic: applying %s to equal states gave different states\n%s",
				r.eventLabel(i, e), diffBlock("state", na, nb))
			checkFrom = len(events)
		}
		a, b = na, nb
	}
	return a, b, true
}

func (r *Result[S]) stepOf(i int) string {
	if i < len(r.f.given) {
		return "Given"
	}
	return "When"
}

func (r *Result[S]) eventLabel(i int, e aggregates.Event) string {
	if i < len(r.f.given) {
		return fmt.Sprintf("given event #%d %s", i, show(e))
	}
	return fmt.Sprintf("new event #%d %s", i-len(r.f.given), show(e))
}

// decide calls Decide once; ok is false if it panicked (and was reported).
func (r *Result[S]) decide(state any) (events []aggregates.Event, err error, ok bool) {
	r.f.t.Helper()
	if msg, panicked := protect(func() { events, err = r.f.h.HandleCommand(state, r.cmd) }); panicked {
		r.fatalf("When", "Decide panicked: %s", msg)
		return nil, nil, false
	}
	return events, err, true
}

func (r *Result[S]) errorf(step, format string, args ...any) {
	r.f.t.Helper()
	r.f.t.Errorf("%s", r.report(step, format, args...))
}

func (r *Result[S]) fatalf(step, format string, args ...any) {
	r.f.t.Helper()
	r.f.t.Fatalf("%s", r.report(step, format, args...))
}

// report formats one failure: the step and the problem first, then the
// scenario it happened in.
func (r *Result[S]) report(step, format string, args ...any) string {
	var b strings.Builder
	fmt.Fprintf(&b, "aggtest: %s: %s\n", step, fmt.Sprintf(format, args...))
	fmt.Fprintf(&b, "  scenario (%s):\n", r.f.h.AggregateType())
	fmt.Fprintf(&b, "    given: %s\n", eventList(r.f.given, "           "))
	fmt.Fprintf(&b, "    when:  %s", show(r.cmd))
	return b.String()
}

// protect runs fn and returns the panic it raised, if any.
func protect(fn func()) (msg string, panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			msg, panicked = fmt.Sprint(v), true
		}
	}()
	fn()
	return "", false
}

func sameOutcome(e1 []aggregates.Event, err1 error, e2 []aggregates.Event, err2 error) bool {
	if (err1 == nil) != (err2 == nil) {
		return false
	}
	if err1 != nil {
		r1, ok1 := aggregates.AsRejection(err1)
		r2, ok2 := aggregates.AsRejection(err2)
		if ok1 != ok2 || (ok1 && *r1 != *r2) || err1.Error() != err2.Error() {
			return false
		}
	}
	if len(e1) == 0 && len(e2) == 0 {
		return true
	}
	return reflect.DeepEqual(e1, e2)
}

func outcome(events []aggregates.Event, err error) string {
	if err != nil {
		return describeErr(err)
	}
	return eventList(events, "          ")
}

func describeErr(err error) string {
	if rej, ok := aggregates.AsRejection(err); ok {
		return fmt.Sprintf("rejected %q: %s", rej.Code, rej.Message)
	}
	return "error: " + err.Error()
}
