// Package account is the example domain of kcqrs: a bank account that can be
// opened, credited, debited and closed, and never goes below zero.
//
// Amounts are int64 minor units of the account's currency (cents for EUR).
// A transfer between two accounts is not a command of this aggregate: it is a
// saga across two aggregates, run by a process that reacts to events.
package account

import (
	"math"
	"strings"

	"github.com/kcqrs/kcqrs/aggregates"
)

// Account statuses. The zero value "" is an account that was never opened.
const (
	StatusOpen   = "open"
	StatusClosed = "closed"
)

// Rejection codes of the account aggregate. Unknown commands are rejected with
// aggregates.CodeUnknownCommand.
const (
	// CodeAlreadyExists: OpenAccount on an account that is open.
	CodeAlreadyExists = "already_exists"
	// CodeClosed: any command on a closed account.
	CodeClosed = "closed"
	// CodeNotOpen: Deposit, Withdraw or CloseAccount on an account that was
	// never opened.
	CodeNotOpen = "not_open"
	// CodeInvalidOwner: OpenAccount with an empty (or blank) owner.
	CodeInvalidOwner = "invalid_owner"
	// CodeInvalidCurrency: OpenAccount with a currency that is not three
	// upper-case ASCII letters.
	CodeInvalidCurrency = "invalid_currency"
	// CodeInvalidAmount: an amount that is not positive, or a deposit that
	// would overflow the balance.
	CodeInvalidAmount = "invalid_amount"
	// CodeInsufficientFunds: a withdrawal larger than the balance.
	CodeInsufficientFunds = "insufficient_funds"
	// CodeNonzeroBalance: CloseAccount while money is left on the account.
	CodeNonzeroBalance = "nonzero_balance"
)

// Account is the state of one account.
type Account struct {
	// Status is "" (never opened), StatusOpen or StatusClosed.
	Status string `avro:"status"`
	Owner  string `avro:"owner"`
	// Currency is an ISO 4217 code: three upper-case letters.
	Currency string `avro:"currency"`
	// Balance in minor units; never negative.
	Balance int64 `avro:"balance"`
}

// OpenAccount opens a new account for Owner in Currency, with a zero balance.
type OpenAccount struct {
	Owner    string `avro:"owner"`
	Currency string `avro:"currency"`
}

// Deposit credits Amount (minor units, positive) to an open account.
type Deposit struct {
	Amount int64 `avro:"amount"`
}

// Withdraw debits Amount (minor units, positive) from an open account, if the
// balance covers it.
type Withdraw struct {
	Amount int64 `avro:"amount"`
}

// CloseAccount closes an open account whose balance is zero.
type CloseAccount struct{}

// CommandType implements aggregates.Command.
func (OpenAccount) CommandType() string { return "OpenAccount" }

// CommandType implements aggregates.Command.
func (Deposit) CommandType() string { return "Deposit" }

// CommandType implements aggregates.Command.
func (Withdraw) CommandType() string { return "Withdraw" }

// CommandType implements aggregates.Command.
func (CloseAccount) CommandType() string { return "CloseAccount" }

// AccountOpened records that the account was opened.
type AccountOpened struct {
	Owner    string `avro:"owner"`
	Currency string `avro:"currency"`
}

// MoneyDeposited records a credit of Amount; Balance is the balance after it.
type MoneyDeposited struct {
	Amount  int64 `avro:"amount"`
	Balance int64 `avro:"balance"`
}

// MoneyWithdrawn records a debit of Amount; Balance is the balance after it.
type MoneyWithdrawn struct {
	Amount  int64 `avro:"amount"`
	Balance int64 `avro:"balance"`
}

// AccountClosed records that the account was closed. It is final.
type AccountClosed struct{}

// EventType implements aggregates.Event.
func (AccountOpened) EventType() string { return "AccountOpened" }

// EventType implements aggregates.Event.
func (MoneyDeposited) EventType() string { return "MoneyDeposited" }

// EventType implements aggregates.Event.
func (MoneyWithdrawn) EventType() string { return "MoneyWithdrawn" }

// EventType implements aggregates.Event.
func (AccountClosed) EventType() string { return "AccountClosed" }

// Name is the wire name of the account aggregate type.
const Name = "account"

// Type is the account aggregate type. Its initial state is the zero Account.
var Type = aggregates.Type[Account]{
	Name:   Name,
	Decide: Decide,
	Evolve: Evolve,
	Commands: []aggregates.Command{
		OpenAccount{},
		Deposit{},
		Withdraw{},
		CloseAccount{},
	},
	Events: []aggregates.Event{
		AccountOpened{},
		MoneyDeposited{},
		MoneyWithdrawn{},
		AccountClosed{},
	},
}

// Decide is the decide function of Type. Commands are expected as values (as
// listed in Type.Commands), not pointers.
func Decide(s Account, cmd aggregates.Command) ([]aggregates.Event, error) {
	switch c := cmd.(type) {
	case OpenAccount:
		return open(s, c)
	case Deposit:
		return deposit(s, c)
	case Withdraw:
		return withdraw(s, c)
	case CloseAccount:
		return closeAccount(s)
	default:
		return nil, aggregates.UnknownCommand(Name, cmd)
	}
}

func open(s Account, c OpenAccount) ([]aggregates.Event, error) {
	switch s.Status {
	case "":
	case StatusClosed:
		return nil, aggregates.Reject(CodeClosed, "account is closed and cannot be opened again")
	default:
		return nil, aggregates.Reject(CodeAlreadyExists, "account is already open")
	}
	// A blank owner is as useless as an empty one.
	if strings.TrimSpace(c.Owner) == "" {
		return nil, aggregates.Reject(CodeInvalidOwner, "owner must not be empty")
	}
	if !validCurrency(c.Currency) {
		return nil, aggregates.Reject(CodeInvalidCurrency, "currency %q is not three upper-case letters (ISO 4217)", c.Currency)
	}
	return []aggregates.Event{AccountOpened(c)}, nil
}

func deposit(s Account, c Deposit) ([]aggregates.Event, error) {
	if err := mustBeOpen(s); err != nil {
		return nil, err
	}
	if c.Amount <= 0 {
		return nil, aggregates.Reject(CodeInvalidAmount, "deposit amount must be positive, got %d", c.Amount)
	}
	if c.Amount > math.MaxInt64-s.Balance {
		return nil, aggregates.Reject(CodeInvalidAmount, "deposit of %d would overflow the balance of %d", c.Amount, s.Balance)
	}
	return []aggregates.Event{MoneyDeposited{Amount: c.Amount, Balance: s.Balance + c.Amount}}, nil
}

func withdraw(s Account, c Withdraw) ([]aggregates.Event, error) {
	if err := mustBeOpen(s); err != nil {
		return nil, err
	}
	if c.Amount <= 0 {
		return nil, aggregates.Reject(CodeInvalidAmount, "withdrawal amount must be positive, got %d", c.Amount)
	}
	if c.Amount > s.Balance {
		return nil, aggregates.Reject(CodeInsufficientFunds, "balance %d is less than the withdrawal of %d", s.Balance, c.Amount)
	}
	return []aggregates.Event{MoneyWithdrawn{Amount: c.Amount, Balance: s.Balance - c.Amount}}, nil
}

func closeAccount(s Account) ([]aggregates.Event, error) {
	if err := mustBeOpen(s); err != nil {
		return nil, err
	}
	if s.Balance != 0 {
		return nil, aggregates.Reject(CodeNonzeroBalance, "balance is %d; only an account with a zero balance can be closed", s.Balance)
	}
	return []aggregates.Event{AccountClosed{}}, nil
}

// mustBeOpen returns an error (never a typed nil) unless the account is open.
func mustBeOpen(s Account) error {
	switch s.Status {
	case StatusOpen:
		return nil
	case "":
		return aggregates.Reject(CodeNotOpen, "account was never opened")
	default:
		return aggregates.Reject(CodeClosed, "account is closed")
	}
}

func validCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := range len(c) {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	return true
}

// Evolve is the evolve function of Type. Events it does not know leave the
// state unchanged, so that old code can replay newer histories.
func Evolve(s Account, event aggregates.Event) Account {
	switch e := event.(type) {
	case AccountOpened:
		return Account{Status: StatusOpen, Owner: e.Owner, Currency: e.Currency}
	case MoneyDeposited:
		// The event carries the balance after it: it is the fact, and
		// replaying it needs no arithmetic that could disagree.
		s.Balance = e.Balance
	case MoneyWithdrawn:
		s.Balance = e.Balance
	case AccountClosed:
		s.Status = StatusClosed
	}
	return s
}
