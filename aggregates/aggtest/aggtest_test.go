package aggtest_test

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/aggregates/aggtest"
)

// fakeT records what the fixture reports instead of failing the test. Like
// testing.T, its Fatalf ends the goroutine, unless returning is set.
type fakeT struct {
	returning bool // Fatalf returns, as a careless TestingT might

	mu      sync.Mutex
	errors  []string
	fatals  []string
	helpers int
}

func (f *fakeT) Helper() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.helpers++
}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	if !f.returning {
		runtime.Goexit()
	}
}

// run runs fn with a fakeT in its own goroutine, so that Fatalf can end it.
func run(fn func(t aggtest.TestingT)) *fakeT {
	return runWith(&fakeT{}, fn)
}

func runWith(f *fakeT, fn func(t aggtest.TestingT)) *fakeT {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

// expect checks the numbers of reports, and that each report of the kind
// holds every fragment.
func (f *fakeT) expect(t *testing.T, errs, fatals int, fragments ...string) {
	t.Helper()
	if len(f.errors) != errs || len(f.fatals) != fatals {
		t.Fatalf("got %d Errorf and %d Fatalf calls, want %d and %d:\n%s",
			len(f.errors), len(f.fatals), errs, fatals, strings.Join(slices.Concat(f.errors, f.fatals), "\n---\n"))
	}
	all := strings.Join(slices.Concat(f.errors, f.fatals), "\n")
	for _, frag := range fragments {
		if !strings.Contains(all, frag) {
			t.Errorf("report lacks %q:\n%s", frag, all)
		}
	}
	if errs+fatals > 0 && f.helpers == 0 {
		t.Errorf("the fixture reported without calling Helper")
	}
}

var (
	opened = account.AccountOpened{Owner: "ann", Currency: "EUR"}
	open70 = account.Account{Status: account.StatusOpen, Owner: "ann", Currency: "EUR", Balance: 70}
)

func TestPassingScenarioReportsNothing(t *testing.T) {
	f := run(func(t aggtest.TestingT) {
		r := aggtest.For(t, account.Type).
			Given(opened, account.MoneyDeposited{Amount: 100, Balance: 100}).
			When(account.Withdraw{Amount: 30}).
			Then(account.MoneyWithdrawn{Amount: 30, Balance: 70}).
			ThenState(open70).
			ThenVersion(3)
		aggtest.For(t, account.Type).Given(opened).When(account.Withdraw{Amount: 1}).
			ThenReject(account.CodeInsufficientFunds).
			ThenVersion(1)
		if r.Err() != nil || len(r.Events()) != 1 || !reflect.DeepEqual(r.State(), open70) || r.Version() != 3 {
			t.Errorf("accessors: err %v, events %v, state %+v, version %d", r.Err(), r.Events(), r.State(), r.Version())
		}
	})
	f.expect(t, 0, 0)
}

func TestThenReportsDifferentEvents(t *testing.T) {
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, account.Type).
			Given(opened, account.MoneyDeposited{Amount: 100, Balance: 100}).
			When(account.Withdraw{Amount: 30}).
			Then(account.MoneyWithdrawn{Amount: 30, Balance: 60})
	})
	f.expect(t, 1, 0,
		"aggtest: Then: events differ",
		"events[0].Balance: want 60, got 70",
		"want: account.MoneyWithdrawn{Amount:30, Balance:60}",
		"got:  account.MoneyWithdrawn{Amount:30, Balance:70}",
		"scenario (account)",
		`given: account.AccountOpened{Owner:"ann", Currency:"EUR"}`,
		"account.MoneyDeposited{Amount:100, Balance:100}",
		"when:  account.Withdraw{Amount:30}")
}

func TestThenReportsMissingAndExtraEvents(t *testing.T) {
	f := run(func(t aggtest.TestingT) {
		r := aggtest.For(t, account.Type).Given(opened).When(account.Deposit{Amount: 5})
		r.Then(account.MoneyDeposited{Amount: 5, Balance: 5}, account.AccountClosed{})
		r.Then()
		r.Then(account.AccountClosed{})
	})
	f.expect(t, 3, 0,
		"events[1]: missing: want account.AccountClosed{}",
		"events[0]: unexpected: got account.MoneyDeposited{Amount:5, Balance:5}",
		"events[0]: want account.AccountClosed{}, got account.MoneyDeposited{Amount:5, Balance:5}")
}

func TestThenReportsRejection(t *testing.T) {
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, account.Type).When(account.Deposit{Amount: 5}).
			Then(account.MoneyDeposited{Amount: 5, Balance: 5})
	})
	f.expect(t, 1, 0, "Then: want 1 event(s), but the command failed: rejected \"not_open\"")
}

func TestThenRejectReportsAcceptedCommand(t *testing.T) {
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, account.Type).Given(opened).When(account.Deposit{Amount: 5}).
			ThenReject(account.CodeInvalidAmount)
	})
	f.expect(t, 1, 0, `ThenReject("invalid_amount"): the command was accepted`, "account.MoneyDeposited{Amount:5, Balance:5}")
}

func TestThenRejectReportsOtherCode(t *testing.T) {
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, account.Type).Given(opened).When(account.Withdraw{Amount: 5}).
			ThenReject(account.CodeInvalidAmount)
	})
	f.expect(t, 1, 0, `rejected with code "insufficient_funds", want "invalid_amount"`, "message: balance 0")
}

func TestThenRejectReportsPlainError(t *testing.T) {
	typ := counterType()
	typ.Decide = func(counter, aggregates.Command) ([]aggregates.Event, error) {
		return nil, errors.New("disk on fire")
	}
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, typ).When(increment{}).ThenReject("x")
	})
	f.expect(t, 1, 0, "not a *aggregates.Rejection: disk on fire")
}

func TestThenRejectAcceptsWrappedRejection(t *testing.T) {
	typ := counterType()
	typ.Decide = func(counter, aggregates.Command) ([]aggregates.Event, error) {
		return nil, fmt.Errorf("wrapped: %w", aggregates.Reject("full", "no room"))
	}
	run(func(t aggtest.TestingT) {
		aggtest.For(t, typ).When(increment{}).ThenReject("full")
	}).expect(t, 0, 0)
}

func TestThenStateReportsDifference(t *testing.T) {
	f := run(func(t aggtest.TestingT) {
		want := open70
		want.Owner = "bob"
		aggtest.For(t, account.Type).
			Given(opened, account.MoneyDeposited{Amount: 100, Balance: 100}).
			When(account.Withdraw{Amount: 30}).
			ThenState(want)
	})
	f.expect(t, 1, 0, "ThenState: states differ", `state.Owner: want "bob", got "ann"`)
}

func TestThenVersionReportsDifference(t *testing.T) {
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, account.Type).Given(opened).When(account.Deposit{Amount: 1}).ThenVersion(1)
	})
	f.expect(t, 1, 0, "ThenVersion: version 2 (1 given + 1 new events), want 1")
}

func TestSeveralFailuresAreAllReported(t *testing.T) {
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, account.Type).Given(opened).When(account.Deposit{Amount: 1}).
			Then().ThenState(account.Account{}).ThenVersion(7)
	})
	f.expect(t, 3, 0, "Then:", "ThenState:", "ThenVersion:")
}

// counter is a test aggregate whose state has a slice and a map, so that
// impure functions have something to write through.
type counter struct {
	Log   []string
	Count map[string]int
}

type increment struct{ Key string }

func (increment) CommandType() string { return "Increment" }

type incremented struct{ Key string }

func (incremented) EventType() string { return "Incremented" }

type unlisted struct{}

func (unlisted) EventType() string { return "Unlisted" }

// counterType is a well-behaved aggregate type; tests break one part.
func counterType() aggregates.Type[counter] {
	return aggregates.Type[counter]{
		Name:    "counter",
		Initial: func() counter { return counter{Count: map[string]int{}} },
		Decide: func(s counter, cmd aggregates.Command) ([]aggregates.Event, error) {
			c, ok := cmd.(increment)
			if !ok {
				return nil, aggregates.UnknownCommand("counter", cmd)
			}
			return []aggregates.Event{incremented(c)}, nil
		},
		Evolve: func(s counter, e aggregates.Event) counter {
			inc := e.(incremented)
			m := maps.Clone(s.Count)
			m[inc.Key]++
			return counter{Log: slices.Concat(s.Log, []string{inc.Key}), Count: m}
		},
		Commands: []aggregates.Command{increment{}},
		Events:   []aggregates.Event{incremented{}},
	}
}

func TestPureAggregatePasses(t *testing.T) {
	run(func(t aggtest.TestingT) {
		aggtest.For(t, counterType()).
			Given(incremented{"a"}, incremented{"b"}, incremented{"a"}).
			When(increment{"a"}).
			Then(incremented{"a"}).
			ThenState(counter{Log: []string{"a", "b", "a", "a"}, Count: map[string]int{"a": 3, "b": 1}}).
			ThenVersion(4)
	}).expect(t, 0, 0)
}

func TestDecideMutatingStateIsReported(t *testing.T) {
	typ := counterType()
	decide := typ.Decide
	typ.Decide = func(s counter, cmd aggregates.Command) ([]aggregates.Event, error) {
		s.Count["a"] = 99 // writes through the map it shares with the caller
		return decide(s, cmd)
	}
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, typ).Given(incremented{"a"}).When(increment{"a"}).Then(incremented{"a"})
	})
	f.expect(t, 1, 0, "When: Decide mutated its input state", `state.Count["a"]: before 1, after 99`)
}

func TestDecideMutatingSliceIsReported(t *testing.T) {
	typ := counterType()
	typ.Decide = func(s counter, cmd aggregates.Command) ([]aggregates.Event, error) {
		slices.Reverse(s.Log)
		return nil, nil
	}
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, typ).Given(incremented{"a"}, incremented{"b"}).When(increment{"a"})
	})
	f.expect(t, 1, 0, "Decide mutated its input state", `state.Log[0]: before "a", after "b"`)
}

func TestNondeterministicDecideIsReported(t *testing.T) {
	typ := counterType()
	calls := 0
	typ.Decide = func(s counter, cmd aggregates.Command) ([]aggregates.Event, error) {
		calls++ // stands in for a clock or a random number
		return []aggregates.Event{incremented{fmt.Sprint(calls)}}, nil
	}
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, typ).When(increment{"a"})
	})
	f.expect(t, 1, 0, "Decide is not deterministic", `incremented{Key:"1"}`, `incremented{Key:"2"}`)
}

func TestEvolveMutatingStateIsReported(t *testing.T) {
	typ := counterType()
	typ.Evolve = func(s counter, e aggregates.Event) counter {
		s.Count[e.(incremented).Key]++ // in place: the old state changes too
		return s
	}
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, typ).Given(incremented{"a"}).When(increment{"b"})
	})
	// Reported once for the history and once for the new event.
	f.expect(t, 2, 0,
		`Given: Evolve mutated its input state applying given event #0 aggtest_test.incremented{Key:"a"}`,
		`state.Count["a"]: unexpected key: after 1`,
		`When: Evolve mutated its input state applying new event #0`)
}

func TestNondeterministicEvolveIsReported(t *testing.T) {
	typ := counterType()
	evolve := typ.Evolve
	calls := 0
	typ.Evolve = func(s counter, e aggregates.Event) counter {
		calls++
		s = evolve(s, e)
		s.Log = append(s.Log, fmt.Sprint(calls))
		return s
	}
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, typ).Given(incremented{"a"}).When(increment{"b"})
	})
	// Reported once: after that, the copies differ and prove nothing more.
	f.expect(t, 1, 0, "Given: Evolve is not deterministic", `state.Log[1]: before "1", after "2"`)
	f = run(func(t aggtest.TestingT) {
		aggtest.For(t, typ).When(increment{"b"})
	})
	f.expect(t, 1, 0, "When: Evolve is not deterministic: applying new event #0")
}

func TestDecidePanicIsFatal(t *testing.T) {
	typ := counterType()
	typ.Decide = func(counter, aggregates.Command) ([]aggregates.Event, error) { panic("boom") }
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, typ).When(increment{}).Then(incremented{})
		t.Errorf("not reached")
	})
	f.expect(t, 0, 1, "aggtest: When: Decide panicked: boom", "scenario (counter)")
}

func TestEvolvePanicNamesTheEvent(t *testing.T) {
	typ := counterType()
	f := run(func(t aggtest.TestingT) {
		// Evolve asserts incremented; the second given event is not one.
		aggtest.For(t, typ).Given(incremented{"a"}, unlisted{}).When(increment{}).Then(incremented{})
	})
	f.expect(t, 1, 1,
		`Given: event #1: event type "Unlisted" (aggtest_test.unlisted) is not listed`,
		"Given: Evolve panicked applying given event #1 aggtest_test.unlisted{}",
		"interface conversion")
}

func TestUnlistedNewEventIsReported(t *testing.T) {
	typ := counterType()
	typ.Evolve = func(s counter, e aggregates.Event) counter { return s }
	typ.Decide = func(counter, aggregates.Command) ([]aggregates.Event, error) {
		return []aggregates.Event{unlisted{}, nil}, nil
	}
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, typ).When(increment{}).Then(unlisted{}, nil)
	})
	f.expect(t, 2, 0, `When: Decide returned event #0: event type "Unlisted"`, "Decide returned event #1: nil event")
}

type impostor struct{ Key int }

func (impostor) EventType() string { return "Incremented" }

func TestEventOfTheWrongGoTypeIsReported(t *testing.T) {
	typ := counterType()
	typ.Evolve = func(s counter, e aggregates.Event) counter { return s }
	typ.Decide = func(counter, aggregates.Command) ([]aggregates.Event, error) {
		return []aggregates.Event{impostor{}}, nil
	}
	run(func(t aggtest.TestingT) {
		aggtest.For(t, typ).When(increment{}).Then(impostor{})
	}).expect(t, 1, 0, "Incremented is a aggtest_test.impostor, but the type's Events list a aggtest_test.incremented")
}

func TestEventsWithErrorAreReported(t *testing.T) {
	typ := counterType()
	typ.Decide = func(counter, aggregates.Command) ([]aggregates.Event, error) {
		return []aggregates.Event{incremented{"a"}}, aggregates.Reject("nope", "no")
	}
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, typ).When(increment{}).ThenReject("nope").ThenVersion(0)
	})
	f.expect(t, 1, 0, "Decide returned 1 event(s) together with an error")
}

func TestInvalidTypeIsFatal(t *testing.T) {
	typ := counterType()
	typ.Name = ""
	typ.Events = append(typ.Events, incremented{})
	f := run(func(t aggtest.TestingT) {
		aggtest.For(t, typ)
		t.Errorf("not reached")
	})
	f.expect(t, 0, 1, "invalid aggregate type", "type has no Name", `event "Incremented" listed twice`)
}

func TestReturningFatalfSkipsTheRest(t *testing.T) {
	typ := counterType()
	typ.Decide = func(counter, aggregates.Command) ([]aggregates.Event, error) { panic("boom") }
	f := runWith(&fakeT{returning: true}, func(t aggtest.TestingT) {
		r := aggtest.For(t, typ).When(increment{}).Then(incremented{}).ThenReject("x").ThenState(counter{}).ThenVersion(9)
		if r.State().Count != nil {
			t.Errorf("State() of an incomplete When: %+v", r.State())
		}
		bad := typ
		bad.Name = ""
		aggtest.For(t, bad).Given(incremented{}).When(increment{}).Then()
		aggtest.ForHandler(t, nil).When(increment{}).Then()
	})
	f.expect(t, 0, 3, "Decide panicked", "invalid aggregate type", "nil aggregate handler")
}

func TestGivenDoesNotShareHistory(t *testing.T) {
	run(func(t aggtest.TestingT) {
		base := aggtest.For(t, account.Type).Given(opened)
		rich := base.Given(account.MoneyDeposited{Amount: 50, Balance: 50})
		poor := base.Given(account.MoneyDeposited{Amount: 1, Balance: 1})
		rich.When(account.Withdraw{Amount: 50}).Then(account.MoneyWithdrawn{Amount: 50, Balance: 0})
		poor.When(account.Withdraw{Amount: 50}).ThenReject(account.CodeInsufficientFunds)
		base.When(account.Withdraw{Amount: 1}).ThenReject(account.CodeInsufficientFunds).ThenVersion(1)
	}).expect(t, 0, 0)
}

func TestWithReportsToTheNewT(t *testing.T) {
	parent := &fakeT{}
	base := aggtest.For(parent, account.Type).Given(opened)
	child := run(func(t aggtest.TestingT) {
		base.With(t).When(account.Deposit{Amount: 1}).Then()
	})
	child.expect(t, 1, 0, "Then: events differ")
	parent.expect(t, 0, 0)
}

func TestForHandlerUsesTheTypeErasedView(t *testing.T) {
	var h aggregates.Handler = account.Type
	run(func(t aggtest.TestingT) {
		r := aggtest.ForHandler(t, h).Given(opened, account.MoneyDeposited{Amount: 100, Balance: 100}).
			When(account.Withdraw{Amount: 30}).
			Then(account.MoneyWithdrawn{Amount: 30, Balance: 70}).
			ThenState(open70)
		if _, ok := r.State().(account.Account); !ok {
			t.Errorf("State() is a %T", r.State())
		}
	}).expect(t, 0, 0)
	f := run(func(t aggtest.TestingT) {
		aggtest.ForHandler(t, h).When(account.OpenAccount{Owner: "ann", Currency: "EUR"}).ThenState("open")
	})
	f.expect(t, 1, 0, "ThenState: states differ", `state: want "open", got account.Account{Status:"open"`)
}

func TestRunTable(t *testing.T) {
	open := account.Account{Status: account.StatusOpen, Owner: "ann", Currency: "EUR"}
	aggtest.Run(t, account.Type, []aggtest.Case[account.Account]{
		{Name: "open", When: account.OpenAccount{Owner: "ann", Currency: "EUR"}, Then: []aggregates.Event{opened}, State: &open, Version: 1},
		{Name: "close", Given: []aggregates.Event{opened}, When: account.CloseAccount{}, Then: []aggregates.Event{account.AccountClosed{}}},
		{Name: "rejected", Given: []aggregates.Event{opened}, When: account.Withdraw{Amount: 3}, Reject: account.CodeInsufficientFunds, State: &open},
	})
}
