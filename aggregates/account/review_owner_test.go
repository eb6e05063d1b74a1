package account_test

import (
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates/account"
)

// TestOwnerIsBounded: an owner of a few hundred KB (a 900 KB command
// carries it) made the projector's owner-index record larger than the
// producer's 1 MB limit, which stopped the projector's accounts group for
// good (MESSAGE_TOO_LARGE, retried forever). Owners are bounded by
// MaxOwnerBytes; one at the bound is accepted.
func TestOwnerIsBounded(t *testing.T) {
	for _, c := range []struct {
		owner string
		code  string
	}{
		{strings.Repeat("é", account.MaxOwnerBytes/2), ""},
		{"x" + strings.Repeat(" ", account.MaxOwnerBytes), account.CodeInvalidOwner},
		{strings.Repeat("a", 400<<10), account.CodeInvalidOwner},
	} {
		evs, err := account.Decide(account.Account{}, account.OpenAccount{Owner: c.owner, Currency: "EUR"})
		switch {
		case c.code == "" && (err != nil || len(evs) != 1):
			t.Errorf("owner of %d bytes: %v %v, want accepted", len(c.owner), evs, err)
		case c.code != "" && (err == nil || !strings.Contains(err.Error(), c.code)):
			t.Errorf("owner of %d bytes: %v %v, want %s", len(c.owner), evs, err, c.code)
		}
	}
}
