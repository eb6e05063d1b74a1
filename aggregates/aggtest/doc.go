// Package aggtest is a given/when/then fixture for testing aggregate types
// without Kafka:
//
//	aggtest.For(t, account.Type).
//		Given(account.AccountOpened{Owner: "ann", Currency: "EUR"}).
//		When(account.Deposit{Amount: 100}).
//		Then(account.MoneyDeposited{Amount: 100, Balance: 100}).
//		ThenState(account.Account{Status: "open", Owner: "ann", Currency: "EUR", Balance: 100})
//
// Given lists the aggregate's history; When runs one command through Decide
// the way the runtime does (through the type-erased aggregates.Handler, from
// the state folded by Evolve); the Then methods assert its outcome: the exact
// events (Then), a rejection code (ThenReject), the state after the history
// and the new events (ThenState) and the version, which the runtime counts as
// the number of events (ThenVersion). Failures name the failing step, show a
// field-by-field difference and repeat the scenario, and are reported through
// t.Errorf, so one test can report several of them. Problems that make the
// rest meaningless (Decide or Evolve panicking, an invalid Type) are reported
// through t.Fatalf.
//
// When also checks the purity the runtime relies on, for every scenario:
//
//   - Decide must not mutate its input state. The fixture folds the history
//     twice and compares the copy Decide saw with the untouched one, which
//     catches writes through slices, maps and pointers in S.
//   - Decide must be deterministic: it is called a second time on a third
//     copy, and both outcomes must be equal.
//   - Evolve must neither mutate its input nor be nondeterministic, checked
//     the same way for every event it applies.
//   - Every event Decide returns must be of a type listed in Type.Events,
//     or the runtime could not encode it; so must every Given event.
//
// These checks compare states with reflect.DeepEqual, so S should not hold
// functions or NaNs, and Initial (if set) must return a fresh value each time.
//
// A fixture binds to one TestingT; in table tests create it inside t.Run (or
// rebind a shared one with With). Run runs a table of Case values as
// subtests, and RunFile runs a data-driven file of scenarios written as text.
package aggtest
