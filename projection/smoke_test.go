package projection

import (
	"fmt"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates/account"
)

func TestSmoke(t *testing.T) {
	e := newEnv(t)
	e.produce(
		rec("a1", e.encode("account", "a1", 1, "", account.AccountOpened{Owner: "alice", Currency: "EUR"})),
		rec("a1", e.encode("account", "a1", 2, "", account.MoneyDeposited{Amount: 10, Balance: 10})),
	)
	p := e.startProjector(e.config(t.TempDir(), 1))
	eventually(t, "applied", func() (bool, string) {
		s := p.Stats()
		return s.Applied == 2 && s.Merged == 4, fmt.Sprintf("%+v", s)
	})
}
