package projection

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates/account"
)

// TestOversizedEntryBlocksNothing: the processor accepts an account whose
// id is 200 KB of '<' (its event is 400 KB), but the account's read-model
// entry is 1.2 MB of JSON ('<' is escaped as \u003c), and an owner of
// 400 KB of spaces makes a 1.2 MB owner-index key (path-escaped). Written,
// either failed the produce and stopped the accounts group for good
// (MESSAGE_TOO_LARGE, retried forever), so no account of the partition
// was folded again. Such events are dead-lettered instead, and the
// accounts after them (same partition) are folded and served.
func TestOversizedEntryBlocksNothing(t *testing.T) {
	e := newEnv(t)
	bigID := strings.Repeat("<", 200<<10)
	var ownerID, next string
	for i := 0; next == "" || ownerID == ""; i++ {
		id := "acc-" + string(rune('a'+i%26)) + strings.Repeat("z", i/26)
		if partitionOf(id) != partitionOf(bigID) {
			continue
		}
		if ownerID == "" {
			ownerID = id
		} else {
			next = id
		}
	}
	e.produce(rec(bigID, e.encode("account", bigID, 1, "", account.AccountOpened{Owner: "ann", Currency: "EUR"})),
		rec(bigID, e.encode("account", bigID, 2, "", account.MoneyDeposited{Amount: 1, Balance: 1})),
		rec(ownerID, e.encode("account", ownerID, 1, "", account.AccountOpened{Owner: "x" + strings.Repeat(" ", 400<<10), Currency: "EUR"})))
	p := e.startProjector(e.config(t.TempDir(), 1))
	s := e.startServer(t.TempDir(), 1)
	eventually(t, "the oversized events dead-lettered", func() (bool, string) {
		st := p.Stats()
		return st.DeadLetters >= 3, fmt.Sprintf("stats %+v", st)
	})
	// Produced after them: folded only if the group still runs.
	e.produce(rec(next, e.encode("account", next, 1, "", account.AccountOpened{Owner: "bo", Currency: "EUR"})))
	eventually(t, "the account after the oversized ones", func() (bool, string) {
		select {
		case err := <-p.done:
			t.Fatalf("the projector stopped: %v", err)
		default:
		}
		a, err := s.Active().Account(next)
		if err != nil || a == nil {
			return false, "not folded yet"
		}
		accs, _, err := s.Active().Owner("bo", "", 10)
		return err == nil && len(accs) == 1, "owner bo not listed yet"
	})
}
