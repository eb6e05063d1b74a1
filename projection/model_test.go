package projection

import (
	"testing"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/wire"
)

// TestFoldAccountAgreesWithTheDomain folds every account event type, as
// values and as pointers, and checks the read model's balance and status
// against the aggregate's own Evolve after each event: a projection that
// forgot an event type (say, the transfer legs) would drift from the
// aggregate it mirrors.
func TestFoldAccountAgreesWithTheDomain(t *testing.T) {
	events := []aggregates.Event{
		account.AccountOpened{Owner: "Ann", Currency: "EUR"},
		account.MoneyDeposited{Amount: 100, Balance: 100},
		&account.TransferDebited{TransferID: "t1", To: "b", Amount: 30, Balance: 70},
		account.TransferCompleted{TransferID: "t1"},
		account.TransferDebited{TransferID: "t2", To: "c", Amount: 20, Balance: 50},
		&account.TransferRefunded{TransferID: "t2", Amount: 20, Balance: 70, Reason: "closed"},
		account.TransferCredited{TransferID: "t3", From: "d", DebitVersion: 4, Amount: 5, Balance: 75},
		account.MoneyWithdrawn{Amount: 75, Balance: 0},
		account.AccountClosed{},
	}
	var (
		model Account
		state account.Account
	)
	for i, ev := range events {
		env := wire.Event{AggregateID: "a", Version: int64(i + 1), TimestampMillis: int64(i)}
		var outcome Outcome
		model, outcome = FoldAccount(model, env, ev)
		if outcome != Applied {
			t.Fatalf("event %d (%T): outcome %v, want Applied", i+1, ev, outcome)
		}
		state = account.Evolve(state, deref(ev).(aggregates.Event))
		if model.Balance != state.Balance || (state.Status != "" && model.Status != state.Status) {
			t.Fatalf("after event %d (%T): read model %+v, aggregate %+v", i+1, ev, model, state)
		}
		if model.Version != int64(i+1) || model.Skipped != 0 {
			t.Fatalf("after event %d: version %d skipped %d", i+1, model.Version, model.Skipped)
		}
	}
	// A redelivery of any of them changes nothing.
	for i, ev := range events {
		again, outcome := FoldAccount(model, wire.Event{AggregateID: "a", Version: int64(i + 1)}, ev)
		if outcome != Stale || again != model {
			t.Fatalf("redelivered event %d: outcome %v, entry %+v", i+1, outcome, again)
		}
	}
}
