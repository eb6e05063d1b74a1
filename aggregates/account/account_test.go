package account_test

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/aggregates/aggtest"
)

var (
	opened = account.AccountOpened{Owner: "ann", Currency: "EUR"}
	closed = account.AccountClosed{}
)

func deposited(amount, balance int64) account.MoneyDeposited {
	return account.MoneyDeposited{Amount: amount, Balance: balance}
}

func withdrawn(amount, balance int64) account.MoneyWithdrawn {
	return account.MoneyWithdrawn{Amount: amount, Balance: balance}
}

func state(balance int64) *account.Account {
	return &account.Account{Status: account.StatusOpen, Owner: "ann", Currency: "EUR", Balance: balance}
}

type launderMoney struct{}

func (launderMoney) CommandType() string { return "LaunderMoney" }

type Case = aggtest.Case[account.Account]

func TestValidate(t *testing.T) {
	if err := account.Type.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenAccount(t *testing.T) {
	aggtest.Run(t, account.Type, []Case{
		{
			Name:    "opens",
			When:    account.OpenAccount{Owner: "ann", Currency: "EUR"},
			Then:    []aggregates.Event{opened},
			State:   state(0),
			Version: 1,
		},
		{
			Name:   "twice",
			Given:  []aggregates.Event{opened},
			When:   account.OpenAccount{Owner: "bob", Currency: "USD"},
			Reject: account.CodeAlreadyExists,
			State:  state(0),
		},
		{
			Name:   "after close",
			Given:  []aggregates.Event{opened, closed},
			When:   account.OpenAccount{Owner: "ann", Currency: "EUR"},
			Reject: account.CodeClosed,
		},
		{Name: "empty owner", When: account.OpenAccount{Currency: "EUR"}, Reject: account.CodeInvalidOwner},
		{Name: "blank owner", When: account.OpenAccount{Owner: " \t", Currency: "EUR"}, Reject: account.CodeInvalidOwner},
		{Name: "empty currency", When: account.OpenAccount{Owner: "ann"}, Reject: account.CodeInvalidCurrency},
		{Name: "lower-case currency", When: account.OpenAccount{Owner: "ann", Currency: "eur"}, Reject: account.CodeInvalidCurrency},
		{Name: "short currency", When: account.OpenAccount{Owner: "ann", Currency: "EU"}, Reject: account.CodeInvalidCurrency},
		{Name: "long currency", When: account.OpenAccount{Owner: "ann", Currency: "EURO"}, Reject: account.CodeInvalidCurrency},
		{Name: "digit in currency", When: account.OpenAccount{Owner: "ann", Currency: "EU1"}, Reject: account.CodeInvalidCurrency},
		{Name: "non-ASCII currency", When: account.OpenAccount{Owner: "ann", Currency: "ÉU"}, Reject: account.CodeInvalidCurrency},
	})
}

func TestDeposit(t *testing.T) {
	aggtest.Run(t, account.Type, []Case{
		{
			Name:  "first deposit",
			Given: []aggregates.Event{opened},
			When:  account.Deposit{Amount: 100},
			Then:  []aggregates.Event{deposited(100, 100)},
			State: state(100),
		},
		{
			Name:    "adds to the balance",
			Given:   []aggregates.Event{opened, deposited(100, 100), withdrawn(30, 70)},
			When:    account.Deposit{Amount: 5},
			Then:    []aggregates.Event{deposited(5, 75)},
			State:   state(75),
			Version: 4,
		},
		{
			Name:  "up to the largest balance",
			Given: []aggregates.Event{opened, deposited(math.MaxInt64-1, math.MaxInt64-1)},
			When:  account.Deposit{Amount: 1},
			Then:  []aggregates.Event{deposited(1, math.MaxInt64)},
		},
		{Name: "never opened", When: account.Deposit{Amount: 1}, Reject: account.CodeNotOpen},
		{Name: "closed", Given: []aggregates.Event{opened, closed}, When: account.Deposit{Amount: 1}, Reject: account.CodeClosed},
		{Name: "zero", Given: []aggregates.Event{opened}, When: account.Deposit{}, Reject: account.CodeInvalidAmount},
		{Name: "negative", Given: []aggregates.Event{opened}, When: account.Deposit{Amount: -1}, Reject: account.CodeInvalidAmount},
		{Name: "most negative", Given: []aggregates.Event{opened}, When: account.Deposit{Amount: math.MinInt64}, Reject: account.CodeInvalidAmount},
		{
			Name:   "overflow",
			Given:  []aggregates.Event{opened, deposited(math.MaxInt64, math.MaxInt64)},
			When:   account.Deposit{Amount: 1},
			Reject: account.CodeInvalidAmount,
			State:  state(math.MaxInt64),
		},
		{
			Name:   "overflow by a large amount",
			Given:  []aggregates.Event{opened, deposited(2, 2)},
			When:   account.Deposit{Amount: math.MaxInt64},
			Reject: account.CodeInvalidAmount,
		},
	})
}

func TestWithdraw(t *testing.T) {
	aggtest.Run(t, account.Type, []Case{
		{
			Name:  "part of the balance",
			Given: []aggregates.Event{opened, deposited(100, 100)},
			When:  account.Withdraw{Amount: 30},
			Then:  []aggregates.Event{withdrawn(30, 70)},
			State: state(70),
		},
		{
			Name:  "all of the balance",
			Given: []aggregates.Event{opened, deposited(100, 100)},
			When:  account.Withdraw{Amount: 100},
			Then:  []aggregates.Event{withdrawn(100, 0)},
			State: state(0),
		},
		{
			Name:    "more than the balance",
			Given:   []aggregates.Event{opened, deposited(100, 100)},
			When:    account.Withdraw{Amount: 101},
			Reject:  account.CodeInsufficientFunds,
			State:   state(100),
			Version: 2,
		},
		{Name: "from an empty account", Given: []aggregates.Event{opened}, When: account.Withdraw{Amount: 1}, Reject: account.CodeInsufficientFunds},
		{Name: "never opened", When: account.Withdraw{Amount: 1}, Reject: account.CodeNotOpen},
		{Name: "closed", Given: []aggregates.Event{opened, closed}, When: account.Withdraw{Amount: 1}, Reject: account.CodeClosed},
		{Name: "zero", Given: []aggregates.Event{opened, deposited(10, 10)}, When: account.Withdraw{}, Reject: account.CodeInvalidAmount},
		{Name: "negative", Given: []aggregates.Event{opened, deposited(10, 10)}, When: account.Withdraw{Amount: -5}, Reject: account.CodeInvalidAmount},
	})
}

func TestCloseAccount(t *testing.T) {
	aggtest.Run(t, account.Type, []Case{
		{
			Name:  "empty account",
			Given: []aggregates.Event{opened},
			When:  account.CloseAccount{},
			Then:  []aggregates.Event{closed},
			State: &account.Account{Status: account.StatusClosed, Owner: "ann", Currency: "EUR"},
		},
		{
			Name:  "emptied account",
			Given: []aggregates.Event{opened, deposited(5, 5), withdrawn(5, 0)},
			When:  account.CloseAccount{},
			Then:  []aggregates.Event{closed},
		},
		{Name: "money left", Given: []aggregates.Event{opened, deposited(5, 5)}, When: account.CloseAccount{}, Reject: account.CodeNonzeroBalance},
		{Name: "never opened", When: account.CloseAccount{}, Reject: account.CodeNotOpen},
		{Name: "twice", Given: []aggregates.Event{opened, closed}, When: account.CloseAccount{}, Reject: account.CodeClosed},
	})
}

func TestUnknownCommand(t *testing.T) {
	aggtest.Run(t, account.Type, []Case{
		{Name: "new account", When: launderMoney{}, Reject: aggregates.CodeUnknownCommand},
		{Name: "open account", Given: []aggregates.Event{opened}, When: launderMoney{}, Reject: aggregates.CodeUnknownCommand},
		{Name: "nil command", Given: []aggregates.Event{opened}, When: nil, Reject: aggregates.CodeUnknownCommand},
		// The runtime decodes commands into the prototypes' types: values.
		{Name: "pointer command", Given: []aggregates.Event{opened}, When: &account.Deposit{Amount: 1}, Reject: aggregates.CodeUnknownCommand},
	})
}

func TestInsufficientFundsMessage(t *testing.T) {
	err := aggtest.For(t, account.Type).
		Given(opened, deposited(40, 40)).
		When(account.Withdraw{Amount: 75}).
		ThenReject(account.CodeInsufficientFunds).
		Err()
	rej, _ := aggregates.AsRejection(err)
	if rej == nil || !strings.Contains(rej.Message, "40") || !strings.Contains(rej.Message, "75") {
		t.Errorf("message %v does not name the balance (40) and the amount (75)", err)
	}
}

type unknownEvent struct{}

func (unknownEvent) EventType() string { return "Unknown" }

func TestEvolve(t *testing.T) {
	s := account.Account{Status: account.StatusOpen, Owner: "ann", Currency: "EUR", Balance: 7}
	if got := account.Evolve(s, unknownEvent{}); !reflect.DeepEqual(got, s) {
		t.Errorf("an unknown event changed the state to %+v", got)
	}
	if got := account.Evolve(s, nil); !reflect.DeepEqual(got, s) {
		t.Errorf("a nil event changed the state to %+v", got)
	}
	// Replaying a whole history, through the runtime's type-erased view.
	var h aggregates.Handler = account.Type
	st := h.InitialState()
	for _, e := range []aggregates.Event{opened, deposited(10, 10), withdrawn(4, 6), withdrawn(6, 0), closed} {
		st = h.ApplyEvent(st, e)
	}
	want := account.Account{Status: account.StatusClosed, Owner: "ann", Currency: "EUR"}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("state %+v, want %+v", st, want)
	}
}

// A whole life, one command at a time, each from the history so far.
func TestLifecycle(t *testing.T) {
	f := aggtest.For(t, account.Type)
	steps := []struct {
		when aggregates.Command
		then []aggregates.Event
	}{
		{account.OpenAccount{Owner: "ann", Currency: "EUR"}, []aggregates.Event{opened}},
		{account.Deposit{Amount: 250}, []aggregates.Event{deposited(250, 250)}},
		{account.Withdraw{Amount: 200}, []aggregates.Event{withdrawn(200, 50)}},
		{account.Withdraw{Amount: 50}, []aggregates.Event{withdrawn(50, 0)}},
		{account.CloseAccount{}, []aggregates.Event{closed}},
	}
	for i, s := range steps {
		r := f.When(s.when).Then(s.then...).ThenVersion(i + 1)
		f = f.Given(r.Events()...)
	}
	f.When(account.Deposit{Amount: 1}).ThenReject(account.CodeClosed).ThenVersion(len(steps))
}

func TestTestdata(t *testing.T) {
	aggtest.RunFile(t, account.Type, "testdata/account.txt")
}

// debited is the debit of transfer seq of the account (its seq-th).
func debited(seq int64, id, to string, amount, balance int64) account.TransferDebited {
	return account.TransferDebited{TransferID: id, To: to, Amount: amount, Balance: balance, Seq: seq}
}

func credited(id, from string, debitVersion, amount, balance int64) account.TransferCredited {
	return account.TransferCredited{TransferID: id, From: from, DebitVersion: debitVersion, Amount: amount, Balance: balance, Seq: 1}
}

func refused(id, from string, debitVersion, amount int64, code, reason string) account.TransferCreditRefused {
	return account.TransferCreditRefused{TransferID: id, From: from, DebitVersion: debitVersion, Amount: amount, Seq: 1, Code: code, Reason: reason}
}

var (
	longSource       = strings.Repeat("s", account.MaxAccountIDBytes+1)
	longSourceReason = fmt.Sprintf("source account id of %d bytes, more than %d: a transfer from it is refunded", account.MaxAccountIDBytes+1, account.MaxAccountIDBytes)
)

func credit(id, from string, debitVersion, amount int64) account.CreditForTransfer {
	return account.CreditForTransfer{TransferID: id, From: from, DebitVersion: debitVersion, Amount: amount, Seq: 1}
}

func withCredited(balance int64, m ...account.CreditMark) *account.Account {
	s := state(balance)
	s.Credited = m
	return s
}

func withPending(balance, debitSeq int64, p ...account.PendingTransfer) *account.Account {
	s := state(balance)
	s.Pending = p
	s.DebitSeq = debitSeq
	return s
}

func TestTransferLegs(t *testing.T) {
	t1 := account.PendingTransfer{TransferID: "t1", To: "bob", Amount: 30, Seq: 1}
	never := &account.Account{Credited: []account.CreditMark{{From: "ann", DebitVersion: 3}}}
	aggtest.Run(t, account.Type, []Case{
		{
			Name:  "debit keeps the transfer pending under the next seq",
			Given: []aggregates.Event{opened, deposited(100, 100)},
			When:  account.DebitForTransfer{TransferID: "t1", To: "bob", Amount: 30},
			Then:  []aggregates.Event{debited(1, "t1", "bob", 30, 70)},
			State: withPending(70, 1, t1),
		},
		{
			// A reused id is a new transfer: a new seq names it.
			Name:  "debit reusing an ended transfer id",
			Given: []aggregates.Event{opened, deposited(100, 100), debited(1, "t1", "bob", 30, 70), account.TransferRefunded{TransferID: "t1", Amount: 30, Balance: 100, Seq: 1}},
			When:  account.DebitForTransfer{TransferID: "t1", To: "carl", Amount: 50},
			Then:  []aggregates.Event{debited(2, "t1", "carl", 50, 50)},
			State: withPending(50, 2, account.PendingTransfer{TransferID: "t1", To: "carl", Amount: 50, Seq: 2}),
		},
		{Name: "debit more than the balance", Given: []aggregates.Event{opened, deposited(10, 10)}, When: account.DebitForTransfer{TransferID: "t1", To: "bob", Amount: 11}, Reject: account.CodeInsufficientFunds},
		{Name: "debit zero", Given: []aggregates.Event{opened, deposited(10, 10)}, When: account.DebitForTransfer{TransferID: "t1", To: "bob"}, Reject: account.CodeInvalidAmount},
		{Name: "debit without id", Given: []aggregates.Event{opened, deposited(10, 10)}, When: account.DebitForTransfer{To: "bob", Amount: 1}, Reject: account.CodeInvalidTransfer},
		{Name: "debit without target", Given: []aggregates.Event{opened, deposited(10, 10)}, When: account.DebitForTransfer{TransferID: "t1", Amount: 1}, Reject: account.CodeInvalidTransfer},
		// Its legs repeat the transfer id and the target: ids past the
		// bounds made legs the saga could not send (the money held pending
		// forever), so the debit is refused, with nothing moved.
		{Name: "debit with a transfer id too long", Given: []aggregates.Event{opened, deposited(10, 10)}, When: account.DebitForTransfer{TransferID: strings.Repeat("t", account.MaxTransferIDBytes+1), To: "bob", Amount: 1}, Reject: account.CodeInvalidTransfer},
		{Name: "debit to a target id too long", Given: []aggregates.Event{opened, deposited(10, 10)}, When: account.DebitForTransfer{TransferID: "t1", To: strings.Repeat("b", account.MaxAccountIDBytes+1), Amount: 1}, Reject: account.CodeInvalidTransfer},
		{
			Name:  "debit with ids at the bounds",
			Given: []aggregates.Event{opened, deposited(10, 10)},
			When:  account.DebitForTransfer{TransferID: strings.Repeat("t", account.MaxTransferIDBytes), To: strings.Repeat("b", account.MaxAccountIDBytes), Amount: 1},
			Then:  []aggregates.Event{debited(1, strings.Repeat("t", account.MaxTransferIDBytes), strings.Repeat("b", account.MaxAccountIDBytes), 1, 9)},
			State: withPending(9, 1, account.PendingTransfer{TransferID: strings.Repeat("t", account.MaxTransferIDBytes), To: strings.Repeat("b", account.MaxAccountIDBytes), Amount: 1, Seq: 1}),
		},
		{Name: "debit from a closed account", Given: []aggregates.Event{opened, closed}, When: account.DebitForTransfer{TransferID: "t1", To: "bob", Amount: 1}, Reject: account.CodeClosed},
		{
			Name:   "debit with a pending id",
			Given:  []aggregates.Event{opened, deposited(100, 100), debited(1, "t1", "bob", 30, 70)},
			When:   account.DebitForTransfer{TransferID: "t1", To: "bob", Amount: 30},
			Reject: account.CodeTransferPending,
		},
		{
			Name:  "credit",
			Given: []aggregates.Event{opened, deposited(5, 5)},
			When:  credit("t1", "ann", 3, 30),
			Then:  []aggregates.Event{credited("t1", "ann", 3, 30, 35)},
			State: withCredited(35, account.CreditMark{From: "ann", DebitVersion: 3}),
		},
		{
			Name:  "credit of a later debit of the same source",
			Given: []aggregates.Event{opened, credited("t1", "ann", 3, 30, 30), credited("t1", "bob", 9, 1, 31)},
			When:  credit("t2", "ann", 4, 1),
			Then:  []aggregates.Event{credited("t2", "ann", 4, 1, 32)},
			State: withCredited(32, account.CreditMark{From: "ann", DebitVersion: 4}, account.CreditMark{From: "bob", DebitVersion: 9}),
		},
		{
			// A replayed credit is refused however old it is: no dedupe window.
			Name:   "credit of a debit credited before",
			Given:  []aggregates.Event{opened, credited("t1", "ann", 3, 30, 30), credited("t2", "ann", 8, 1, 31)},
			When:   credit("t1", "ann", 3, 30),
			Reject: account.CodeAlreadyCredited,
		},
		{Name: "credit without debit version", Given: []aggregates.Event{opened}, When: credit("t1", "ann", 0, 1), Reject: account.CodeInvalidTransfer},
		{Name: "credit without source", Given: []aggregates.Event{opened}, When: credit("t1", "", 1, 1), Reject: account.CodeInvalidTransfer},
		{Name: "credit without transfer id", Given: []aggregates.Event{opened}, When: credit("", "ann", 1, 1), Reject: account.CodeInvalidTransfer},
		// A source over the bound is refused with no credit mark (each
		// one's id in the state outgrew the snapshot), and refused again
		// on a replay: its refund is the first one's.
		{
			Name:  "credit from a source id too long",
			Given: []aggregates.Event{opened, deposited(10, 10)},
			When:  credit("t1", longSource, 1, 5),
			Then:  []aggregates.Event{refused("t1", longSource, 1, 5, account.CodeInvalidTransfer, longSourceReason)},
			State: state(10),
		},
		{
			Name:  "credit from a source id too long, replayed",
			Given: []aggregates.Event{opened, deposited(10, 10), refused("t1", longSource, 1, 5, account.CodeInvalidTransfer, longSourceReason)},
			When:  credit("t1", longSource, 1, 5),
			Then:  []aggregates.Event{refused("t1", longSource, 1, 5, account.CodeInvalidTransfer, longSourceReason)},
			State: state(10),
		},
		{
			// A mark kept from before the bound still decides its debits.
			Name:   "credit from a long source at an old mark",
			Given:  []aggregates.Event{opened, credited("t1", longSource, 3, 5, 5)},
			When:   credit("t1", longSource, 3, 5),
			Reject: account.CodeAlreadyCredited,
		},
		{Name: "credit of nothing", Given: []aggregates.Event{opened}, When: credit("t1", "ann", 1, 0), Reject: account.CodeInvalidAmount},
		{Name: "credit of a negative amount to a closed account records nothing", Given: []aggregates.Event{opened, closed}, When: credit("t1", "ann", 1, -5), Reject: account.CodeInvalidAmount},
		{
			// The refusal is a fact on the target: a replay sees it.
			Name:  "credit to a closed account is refused and recorded",
			Given: []aggregates.Event{opened, closed},
			When:  credit("t1", "ann", 1, 1),
			Then:  []aggregates.Event{refused("t1", "ann", 1, 1, account.CodeClosed, "account is closed")},
			State: &account.Account{Status: account.StatusClosed, Owner: "ann", Currency: "EUR", Credited: []account.CreditMark{{From: "ann", DebitVersion: 1}}},
		},
		{
			Name:  "credit to an account never opened is refused and recorded",
			When:  credit("t1", "ann", 3, 1),
			Then:  []aggregates.Event{refused("t1", "ann", 3, 1, account.CodeNotOpen, "account was never opened")},
			State: never,
		},
		{
			Name:   "a refused credit stays refused after the account opened",
			Given:  []aggregates.Event{refused("t1", "ann", 3, 1, account.CodeNotOpen, "account was never opened"), opened},
			When:   credit("t1", "ann", 3, 1),
			Reject: account.CodeAlreadyCredited,
		},
		{
			Name:  "an account opens after a refused credit, keeping the refusal",
			Given: []aggregates.Event{refused("t1", "ann", 3, 1, account.CodeNotOpen, "account was never opened")},
			When:  account.OpenAccount{Owner: "ann", Currency: "EUR"},
			Then:  []aggregates.Event{opened},
			State: withCredited(0, account.CreditMark{From: "ann", DebitVersion: 3}),
		},
		{
			Name:   "a refused credit replayed on a closed account",
			Given:  []aggregates.Event{opened, closed, refused("t1", "ann", 3, 1, account.CodeClosed, "account is closed")},
			When:   credit("t1", "ann", 3, 1),
			Reject: account.CodeAlreadyCredited,
		},
		{
			Name:  "a later debit of the same source after a refusal",
			Given: []aggregates.Event{refused("t1", "ann", 3, 1, account.CodeNotOpen, "account was never opened"), opened},
			When:  credit("t2", "ann", 5, 7),
			Then:  []aggregates.Event{credited("t2", "ann", 5, 7, 7)},
			State: withCredited(7, account.CreditMark{From: "ann", DebitVersion: 5}),
		},
		{
			// The refund of a pending transfer must always fit.
			Name:  "credit into the room of a pending refund is refused and recorded",
			Given: []aggregates.Event{opened, deposited(math.MaxInt64-10, math.MaxInt64-10), debited(1, "t1", "bob", 10, math.MaxInt64-20)},
			When:  credit("t2", "carl", 1, 11),
			Then:  []aggregates.Event{refused("t2", "carl", 1, 11, account.CodeInvalidAmount, "credit of 11 would overflow the balance of 9223372036854775787")},
		},
		{
			Name:   "deposit into the room of a pending refund",
			Given:  []aggregates.Event{opened, deposited(math.MaxInt64-10, math.MaxInt64-10), debited(1, "t1", "bob", 10, math.MaxInt64-20)},
			When:   account.Deposit{Amount: 11},
			Reject: account.CodeInvalidAmount,
		},
		{
			Name:  "complete",
			Given: []aggregates.Event{opened, deposited(100, 100), debited(1, "t1", "bob", 30, 70)},
			When:  account.CompleteTransfer{TransferID: "t1", Seq: 1},
			Then:  []aggregates.Event{account.TransferCompleted{TransferID: "t1", Seq: 1}},
			State: withPending(70, 1),
		},
		{
			Name:   "complete twice",
			Given:  []aggregates.Event{opened, deposited(100, 100), debited(1, "t1", "bob", 30, 70), account.TransferCompleted{TransferID: "t1", Seq: 1}},
			When:   account.CompleteTransfer{TransferID: "t1", Seq: 1},
			Reject: account.CodeUnknownTransfer,
		},
		{Name: "complete with another seq", Given: []aggregates.Event{opened, deposited(100, 100), debited(1, "t1", "bob", 30, 70)}, When: account.CompleteTransfer{TransferID: "t1", Seq: 2}, Reject: account.CodeUnknownTransfer},
		{Name: "complete with another id", Given: []aggregates.Event{opened, deposited(100, 100), debited(1, "t1", "bob", 30, 70)}, When: account.CompleteTransfer{TransferID: "t2", Seq: 1}, Reject: account.CodeUnknownTransfer},
		{Name: "complete without seq (a saga before seqs)", Given: []aggregates.Event{opened, deposited(100, 100), debited(1, "t1", "bob", 30, 70)}, When: account.CompleteTransfer{TransferID: "t1"}, Reject: account.CodeUnknownTransfer},
		{
			// A debit written before seqs existed is ended by a command without one.
			Name:  "complete a transfer debited before seqs",
			Given: []aggregates.Event{opened, deposited(100, 100), debited(0, "t1", "bob", 30, 70)},
			When:  account.CompleteTransfer{TransferID: "t1"},
			Then:  []aggregates.Event{account.TransferCompleted{TransferID: "t1"}},
			State: withPending(70, 0),
		},
		{
			Name:  "refund returns the pending amount",
			Given: []aggregates.Event{opened, deposited(100, 100), debited(1, "t1", "bob", 30, 70), withdrawn(70, 0)},
			When:  account.RefundTransfer{TransferID: "t1", Reason: "closed", Seq: 1},
			Then:  []aggregates.Event{account.TransferRefunded{TransferID: "t1", Amount: 30, Balance: 30, Reason: "closed", Seq: 1}},
			State: withPending(30, 1),
		},
		{
			Name:   "refund twice",
			Given:  []aggregates.Event{opened, deposited(100, 100), debited(1, "t1", "bob", 30, 70), account.TransferRefunded{TransferID: "t1", Amount: 30, Balance: 100, Seq: 1}},
			When:   account.RefundTransfer{TransferID: "t1", Seq: 1},
			Reject: account.CodeUnknownTransfer,
		},
		{
			Name:   "refund after complete",
			Given:  []aggregates.Event{opened, deposited(100, 100), debited(1, "t1", "bob", 30, 70), account.TransferCompleted{TransferID: "t1", Seq: 1}},
			When:   account.RefundTransfer{TransferID: "t1", Seq: 1},
			Reject: account.CodeUnknownTransfer,
		},
		{
			// Scenario 2 of issue 13: the old refund leg, replayed, must not
			// refund the new transfer that reuses the id.
			Name:   "an old refund does not end a new transfer reusing the id",
			Given:  []aggregates.Event{opened, deposited(101, 101), debited(1, "t2", "gone", 50, 51), account.TransferRefunded{TransferID: "t2", Amount: 50, Balance: 101, Seq: 1}, debited(2, "t2", "bob", 50, 51)},
			When:   account.RefundTransfer{TransferID: "t2", Seq: 1},
			Reject: account.CodeUnknownTransfer,
		},
		{
			Name:  "the new transfer reusing the id ends by its own seq",
			Given: []aggregates.Event{opened, deposited(101, 101), debited(1, "t2", "gone", 50, 51), account.TransferRefunded{TransferID: "t2", Amount: 50, Balance: 101, Seq: 1}, debited(2, "t2", "bob", 50, 51)},
			When:  account.CompleteTransfer{TransferID: "t2", Seq: 2},
			Then:  []aggregates.Event{account.TransferCompleted{TransferID: "t2", Seq: 2}},
			State: withPending(51, 2),
		},
		{
			Name:   "close with a pending transfer",
			Given:  []aggregates.Event{opened, deposited(30, 30), debited(1, "t1", "bob", 30, 0)},
			When:   account.CloseAccount{},
			Reject: account.CodePendingTransfers,
		},
		{
			Name:  "pending transfers are independent",
			Given: []aggregates.Event{opened, deposited(100, 100), debited(1, "t1", "bob", 30, 70), debited(2, "t2", "carl", 20, 50)},
			When:  account.CompleteTransfer{TransferID: "t1", Seq: 1},
			Then:  []aggregates.Event{account.TransferCompleted{TransferID: "t1", Seq: 1}},
			State: withPending(50, 2, account.PendingTransfer{TransferID: "t2", To: "carl", Amount: 20, Seq: 2}),
		},
	})
}

// PayOutAndClose is the example of a command with several events.
// TestCreditMarksStayBounded: a target keeps one credit mark per source
// account, with the source's id. Sources are anyone's to open, so a target
// that took credits from a few hundred sources of 4 KB ids held more than a
// snapshot record may (1 MB): every later command on it, credits included,
// was refused output_too_large, and those transfers stayed pending. Past
// MaxCreditMarkBytes a credit from a new source is refused (recorded, no
// mark; refunded by the saga); sources with a mark are decided as before.
func TestCreditMarksStayBounded(t *testing.T) {
	given := []aggregates.Event{opened}
	var marks []account.CreditMark
	for i, size := 0, 0; size <= account.MaxCreditMarkBytes; i++ {
		from := fmt.Sprintf("%04d", i) + strings.Repeat("s", account.MaxAccountIDBytes-4)
		given = append(given, credited("t", from, 1, 1, int64(i+1)))
		marks = append(marks, account.CreditMark{From: from, DebitVersion: 1})
		size += len(from)
	}
	balance := int64(len(marks))
	full := withCredited(balance, marks...)
	reason := fmt.Sprintf("credit marks of %d bytes would exceed %d: a transfer from a new source is refunded", credits(marks)+len("newcomer"), account.MaxCreditMarkBytes)
	aggtest.Run(t, account.Type, []Case{
		{
			Name:  "a new source past the bound is refused without a mark",
			Given: given,
			When:  credit("t", "newcomer", 1, 5),
			Then:  []aggregates.Event{refused("t", "newcomer", 1, 5, account.CodeTooManySources, reason)},
			State: full,
		},
		{
			Name:  "and refused again on a replay",
			Given: append(append([]aggregates.Event(nil), given...), refused("t", "newcomer", 1, 5, account.CodeTooManySources, reason)),
			When:  credit("t", "newcomer", 1, 5),
			Then:  []aggregates.Event{refused("t", "newcomer", 1, 5, account.CodeTooManySources, reason)},
			State: full,
		},
		{
			Name:  "a known source is still credited",
			Given: given,
			When:  credit("t", marks[0].From, 2, 5),
			Then:  []aggregates.Event{credited("t", marks[0].From, 2, 5, balance+5)},
		},
	})
}

// TestErasedRefusalsKeepMarksBounded: on an erased account the processor
// replaces the domain's decision on a credit by a refusal (code erased,
// RefusedWhenErased), so the domain's refusal without a mark
// (too_many_sources, a source id too long) became a refusal with one, and
// an erased account's marks grew without bound. A refusal of a source the
// rules refuse anyway keeps no mark, whatever its code.
func TestErasedRefusalsKeepMarksBounded(t *testing.T) {
	var full account.Account
	full.Status = account.StatusOpen
	for i, size := 0, 0; size <= account.MaxCreditMarkBytes; i++ {
		from := fmt.Sprintf("%04d", i) + strings.Repeat("s", account.MaxAccountIDBytes-4)
		full.Credited = append(full.Credited, account.CreditMark{From: from, DebitVersion: 1})
		size += len(from)
	}
	n := len(full.Credited)
	for _, from := range []string{"newcomer", longSource} {
		got := account.Evolve(full, refused("t", from, 1, 5, account.CodeErased, "the account was erased"))
		if len(got.Credited) != n {
			t.Errorf("an erased refusal of %d-byte source added a mark past the bound: %d marks, want %d", len(from), len(got.Credited), n)
		}
	}
	// A source with a mark keeps deciding by it.
	got := account.Evolve(full, refused("t", full.Credited[0].From, 2, 5, account.CodeErased, "the account was erased"))
	if got.Credited[0].DebitVersion != 2 {
		t.Errorf("the mark of a known source did not move: %+v", got.Credited[0])
	}
}

func credits(marks []account.CreditMark) int {
	n := 0
	for _, m := range marks {
		n += len(m.From)
	}
	return n
}

func TestPayOutAndClose(t *testing.T) {
	closedState := &account.Account{Status: account.StatusClosed, Owner: "ann", Currency: "EUR"}
	aggtest.Run(t, account.Type, []Case{
		{
			Name:    "pays out and closes",
			Given:   []aggregates.Event{opened, deposited(40, 40)},
			When:    account.PayOutAndClose{},
			Then:    []aggregates.Event{withdrawn(40, 0), closed},
			State:   closedState,
			Version: 4,
		},
		{Name: "empty account just closes", Given: []aggregates.Event{opened}, When: account.PayOutAndClose{}, Then: []aggregates.Event{closed}, State: closedState},
		{Name: "never opened", When: account.PayOutAndClose{}, Reject: account.CodeNotOpen},
		{Name: "closed", Given: []aggregates.Event{opened, closed}, When: account.PayOutAndClose{}, Reject: account.CodeClosed},
		{Name: "pending transfer", Given: []aggregates.Event{opened, deposited(40, 40), debited(1, "t1", "bob", 10, 30)}, When: account.PayOutAndClose{}, Reject: account.CodePendingTransfers},
	})
}

// Evolve must not share the Pending backing array between states: a state
// the runtime keeps (a snapshot) must not change when a later state does.
func TestEvolveDoesNotAlias(t *testing.T) {
	s := account.Evolve(account.Account{}, opened)
	s = account.Evolve(s, deposited(100, 100))
	s = account.Evolve(s, debited(1, "t1", "b", 10, 90))
	a := account.Evolve(s, debited(2, "t2", "b", 10, 80))
	b := account.Evolve(s, debited(2, "t3", "b", 10, 80))
	if a.Pending[1].TransferID != "t2" || b.Pending[1].TransferID != "t3" || len(s.Pending) != 1 {
		t.Fatalf("states share pending transfers: %+v %+v %+v", s.Pending, a.Pending, b.Pending)
	}
}
