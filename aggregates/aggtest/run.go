package aggtest

import (
	"testing"

	"github.com/kcqrs/kcqrs/aggregates"
)

// Case is one row of a table test run by Run.
type Case[S any] struct {
	// Name names the subtest.
	Name string
	// Given is the aggregate's history, oldest first.
	Given []aggregates.Event
	// When is the command under test.
	When aggregates.Command
	// Then lists the expected events when Reject is empty; none means the
	// command must be accepted without events.
	Then []aggregates.Event
	// Reject is the expected rejection code, if the command must be rejected.
	Reject string
	// State, if not nil, is the expected state afterwards.
	State *S
	// Version, if not zero, is the expected version afterwards.
	Version int
}

// Run runs each case as a subtest of t, named by its Name.
func Run[S any](t *testing.T, typ aggregates.Type[S], cases []Case[S]) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Helper()
			if c.Reject != "" && len(c.Then) > 0 {
				t.Fatalf("aggtest: case %q sets both Then and Reject", c.Name)
			}
			r := For(t, typ).Given(c.Given...).When(c.When)
			if c.Reject != "" {
				r.ThenReject(c.Reject)
			} else {
				r.Then(c.Then...)
			}
			if c.State != nil {
				r.ThenState(*c.State)
			}
			if c.Version != 0 {
				r.ThenVersion(c.Version)
			}
		})
	}
}
