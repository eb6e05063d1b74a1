// Package account is the example domain of kcqrs: a bank account that can be
// opened, credited, debited and closed, and never goes below zero.
//
// Amounts are int64 minor units of the account's currency (cents for EUR).
//
// A transfer between two accounts is not one command: it is a saga across two
// aggregates, run by a process that reacts to events (package saga). This
// aggregate provides its legs: DebitForTransfer takes the money out of the
// source and records the transfer as pending there, numbered by the source's
// own transfer sequence (Seq), so that a client reusing a transfer id can
// never alias an older transfer; CreditForTransfer puts it into the target,
// or, when the target cannot take it (closed, never opened, overflow),
// records the refusal there as an event (TransferCreditRefused), so that the
// target answers every later credit of that debit as decided already, even
// after it is opened; CompleteTransfer (after the credit) or RefundTransfer
// (after the refusal) ends the pending transfer named by its Seq on the
// source. A pending transfer blocks closing the source, so a refund always
// has an open account to go back to, and a pending transfer ends only once,
// so a refund can never be paid twice.
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
	// CodeAlreadyCredited: CreditForTransfer for a debit at or below the
	// latest one decided (credited or refused) from the same source: it was
	// decided already, and its event drove the transfer on.
	CodeAlreadyCredited = "already_credited"
	// CodeNonzeroBalance: CloseAccount while money is left on the account.
	CodeNonzeroBalance = "nonzero_balance"
	// CodeInvalidTransfer: a transfer command without a transfer id or
	// (DebitForTransfer) without a target account, or (DebitForTransfer)
	// with a transfer id over MaxTransferIDBytes or a target over
	// MaxAccountIDBytes; also the code of the TransferCreditRefused of a
	// credit from a source over MaxAccountIDBytes.
	CodeInvalidTransfer = "invalid_transfer"
	// CodeTransferPending: DebitForTransfer with the id of a transfer that is
	// still pending on this account.
	CodeTransferPending = "transfer_pending"
	// CodeUnknownTransfer: CompleteTransfer or RefundTransfer for a transfer
	// that is not pending on this account (never debited, or already ended),
	// or whose transfer id is not the pending transfer's with that Seq.
	CodeUnknownTransfer = "unknown_transfer"
	// CodePendingTransfers: closing an account with outgoing transfers that
	// have not ended: their refunds need the account open.
	CodePendingTransfers = "pending_transfers"
	// CodeErased: the code of a TransferCreditRefused recorded because the
	// target's personal data was erased (RefusedWhenErased).
	CodeErased = "erased"
	// CodeTooManySources: the code of a TransferCreditRefused recorded
	// because the target's credit marks (one per source account, with its
	// id) would grow past MaxCreditMarkBytes with a new source.
	CodeTooManySources = "too_many_sources"
)

// Bounds of the ids a transfer repeats. A debit's transfer id and target
// travel in every leg the saga derives from it (as its key, value and
// correlation id), in the source's pending list and in the target's events:
// a debit naming ids of hundreds of KB was accepted, and its legs could not
// be written (larger than a command may be), so its money stayed pending
// forever. DebitForTransfer refuses them (CodeInvalidTransfer) instead.
const (
	// MaxTransferIDBytes bounds a transfer id (a client's label: a UUID is
	// 36 bytes).
	MaxTransferIDBytes = 256
	// MaxAccountIDBytes bounds the account id a transfer names as its
	// target; a credit from a source over it is refused (and refunded).
	MaxAccountIDBytes = 4096
	// MaxCreditMarkBytes bounds the source ids an account keeps in its
	// credit marks (Account.Credited): a credit from a source without a
	// mark that would take them past it is refused (CodeTooManySources)
	// and refunded. Without it, credits from a few hundred sources made
	// the account's snapshot larger than a record may be, and every later
	// command on it failed.
	MaxCreditMarkBytes = 256 << 10
)

// capID is an id as a rejection message quotes it: at most 64 bytes of it.
func capID(id string) string {
	if len(id) > 64 {
		return id[:64] + "..."
	}
	return id
}

// Account is the state of one account.
type Account struct {
	// Status is "" (never opened), StatusOpen or StatusClosed.
	Status string `avro:"status"`
	Owner  string `avro:"owner"`
	// Currency is an ISO 4217 code: three upper-case letters.
	Currency string `avro:"currency"`
	// Balance in minor units; never negative. Money of pending outgoing
	// transfers is not part of it.
	Balance int64 `avro:"balance"`
	// Pending lists the outgoing transfers debited from this account that
	// have not completed or been refunded yet, oldest first. Balance plus
	// their amounts never exceeds math.MaxInt64, so a refund cannot overflow.
	Pending []PendingTransfer `avro:"pending" json:",omitempty"`
	// Credited holds, per source account, the version of the latest debit
	// decided here: credited, or refused (TransferCreditRefused). The saga
	// sends a source's credits in the order of its debits, so a credit at or
	// below the mark was decided already: this makes credits idempotent
	// beyond any dedupe window (a saga replaying old events cannot pay a
	// transfer twice, nor pay one that was refused and refunded, even after
	// this account opened). One entry per counterparty. Kept when the
	// account is opened after a refusal.
	Credited []CreditMark `avro:"credited" json:",omitempty"`
	// DebitSeq is the Seq of the latest outgoing transfer debited here (0:
	// none). Seqs name outgoing transfers forever: 1, 2, 3, ...
	DebitSeq int64 `avro:"debitSeq" json:",omitempty"`
}

// CreditMark is the latest debit of one source account credited here.
type CreditMark struct {
	From         string `avro:"from"`
	DebitVersion int64  `avro:"debitVersion"`
}

// creditedUpTo returns the mark for source from (0 if none).
func (s Account) creditedUpTo(from string) int64 {
	for _, m := range s.Credited {
		if m.From == from {
			return m.DebitVersion
		}
	}
	return 0
}

// markBytes returns the bytes of the source ids in the credit marks and
// whether from has one.
func (s Account) markBytes(from string) (n int, marked bool) {
	for _, m := range s.Credited {
		n += len(m.From)
		marked = marked || m.From == from
	}
	return n, marked
}

// PendingTransfer is an outgoing transfer in flight.
type PendingTransfer struct {
	TransferID string `avro:"transferId"`
	To         string `avro:"to"`
	Amount     int64  `avro:"amount"`
	// Seq is the transfer's number on this account (its TransferDebited's
	// Seq); 0 for a transfer debited before Seqs existed.
	Seq int64 `avro:"seq" json:",omitempty"`
}

// pending returns the index of the pending transfer with id, or -1.
func (s Account) pending(id string) int {
	for i, p := range s.Pending {
		if p.TransferID == id {
			return i
		}
	}
	return -1
}

// pendingSeq returns the index of the pending transfer named by seq and id,
// or -1. Seq 0 is a command of a saga older than Seqs: it can end only a
// transfer debited before Seqs existed (Seq 0 too), never a newer one that
// reuses the id.
func (s Account) pendingSeq(seq int64, id string) int {
	for i, p := range s.Pending {
		if p.Seq == seq && p.TransferID == id {
			return i
		}
	}
	return -1
}

// inFlight is the money of the pending outgoing transfers.
func (s Account) inFlight() int64 {
	var n int64
	for _, p := range s.Pending {
		n += p.Amount
	}
	return n
}

// room is how much more money the account can hold: a credit above it could
// make a later refund overflow.
func (s Account) room() int64 { return math.MaxInt64 - s.Balance - s.inFlight() }

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

// PayOutAndClose withdraws the whole balance and closes the account, in one
// command: two events (MoneyWithdrawn, AccountClosed) that become visible
// together or not at all. An empty account just closes.
type PayOutAndClose struct{}

// DebitForTransfer is the first leg of a transfer of Amount to account To:
// it takes the money out of this account and keeps the transfer pending
// until CompleteTransfer or RefundTransfer. TransferID names the transfer
// among this account's pending ones.
type DebitForTransfer struct {
	TransferID string `avro:"transferId"`
	To         string `avro:"to"`
	Amount     int64  `avro:"amount"`
}

// CreditForTransfer is the second leg: it puts Amount, debited from account
// From by its event at version DebitVersion (transfer Seq of From), into
// this account, or records why it cannot (TransferCreditRefused: closed,
// never opened, overflow). Either way the debit is decided here for good:
// a later credit of it is rejected as CodeAlreadyCredited, without effect.
type CreditForTransfer struct {
	TransferID   string `avro:"transferId"`
	From         string `avro:"from"`
	DebitVersion int64  `avro:"debitVersion"`
	Amount       int64  `avro:"amount"`
	Seq          int64  `avro:"seq"`
}

// CompleteTransfer ends the pending outgoing transfer Seq (with id
// TransferID) whose credit succeeded.
type CompleteTransfer struct {
	TransferID string `avro:"transferId"`
	Seq        int64  `avro:"seq"`
}

// RefundTransfer ends the pending outgoing transfer Seq (with id TransferID)
// whose credit was refused, putting its amount back on the balance. Reason
// says why (for people).
type RefundTransfer struct {
	TransferID string `avro:"transferId"`
	Reason     string `avro:"reason"`
	Seq        int64  `avro:"seq"`
}

// CommandType implements aggregates.Command.
func (OpenAccount) CommandType() string { return "OpenAccount" }

// CommandType implements aggregates.Command.
func (Deposit) CommandType() string { return "Deposit" }

// CommandType implements aggregates.Command.
func (Withdraw) CommandType() string { return "Withdraw" }

// CommandType implements aggregates.Command.
func (CloseAccount) CommandType() string { return "CloseAccount" }

// CommandType implements aggregates.Command.
func (PayOutAndClose) CommandType() string { return "PayOutAndClose" }

// CommandType implements aggregates.Command.
func (DebitForTransfer) CommandType() string { return "DebitForTransfer" }

// CommandType implements aggregates.Command.
func (CreditForTransfer) CommandType() string { return "CreditForTransfer" }

// RefusedWhenErased is the refusal a credit gets on an account whose
// personal data was erased (aggregates.RefusedWhenErased): the source is
// refunded, as for any refusal.
func (c CreditForTransfer) RefusedWhenErased() aggregates.Event {
	return TransferCreditRefused{TransferID: c.TransferID, From: c.From, DebitVersion: c.DebitVersion, Amount: c.Amount, Seq: c.Seq,
		Code: CodeErased, Reason: "the account was erased"}
}

// CommandType implements aggregates.Command.
func (CompleteTransfer) CommandType() string { return "CompleteTransfer" }

// CommandType implements aggregates.Command.
func (RefundTransfer) CommandType() string { return "RefundTransfer" }

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

// TransferDebited records the debit leg of a transfer to To; Balance is the
// balance after it. The transfer is pending from now on. Seq numbers it
// among this account's outgoing transfers (1, 2, 3, ...; 0 in events
// written before Seqs existed).
type TransferDebited struct {
	TransferID string `avro:"transferId"`
	To         string `avro:"to"`
	Amount     int64  `avro:"amount"`
	Balance    int64  `avro:"balance"`
	Seq        int64  `avro:"seq"`
}

// TransferCredited records the credit leg of a transfer from From (its debit
// at version DebitVersion of From, transfer Seq there).
type TransferCredited struct {
	TransferID   string `avro:"transferId"`
	From         string `avro:"from"`
	DebitVersion int64  `avro:"debitVersion"`
	Amount       int64  `avro:"amount"`
	Balance      int64  `avro:"balance"`
	Seq          int64  `avro:"seq"`
}

// TransferCreditRefused records that this account could not take the credit
// of a transfer from From (debit version DebitVersion, Seq there): Code says
// why (CodeClosed, CodeNotOpen, CodeInvalidAmount). No money moved here; the
// source gets it back. It is an event (not a rejection) so that the refusal
// is a fact a replay sees: the debit is decided here, and an account opened
// later never pays it.
type TransferCreditRefused struct {
	TransferID   string `avro:"transferId"`
	From         string `avro:"from"`
	DebitVersion int64  `avro:"debitVersion"`
	Amount       int64  `avro:"amount"`
	Seq          int64  `avro:"seq"`
	Code         string `avro:"code"`
	Reason       string `avro:"reason"`
}

// TransferCompleted records that a pending outgoing transfer was credited.
type TransferCompleted struct {
	TransferID string `avro:"transferId"`
	Seq        int64  `avro:"seq"`
}

// TransferRefunded records that a pending outgoing transfer was refused by
// its target and its Amount returned; Balance is the balance after it.
type TransferRefunded struct {
	TransferID string `avro:"transferId"`
	Amount     int64  `avro:"amount"`
	Balance    int64  `avro:"balance"`
	Reason     string `avro:"reason"`
	Seq        int64  `avro:"seq"`
}

// EventType implements aggregates.Event.
func (AccountOpened) EventType() string { return "AccountOpened" }

// EventType implements aggregates.Event.
func (MoneyDeposited) EventType() string { return "MoneyDeposited" }

// EventType implements aggregates.Event.
func (MoneyWithdrawn) EventType() string { return "MoneyWithdrawn" }

// EventType implements aggregates.Event.
func (AccountClosed) EventType() string { return "AccountClosed" }

// EventType implements aggregates.Event.
func (TransferDebited) EventType() string { return "TransferDebited" }

// EventType implements aggregates.Event.
func (TransferCredited) EventType() string { return "TransferCredited" }

// EventType implements aggregates.Event.
func (TransferCreditRefused) EventType() string { return "TransferCreditRefused" }

// EventType implements aggregates.Event.
func (TransferCompleted) EventType() string { return "TransferCompleted" }

// EventType implements aggregates.Event.
func (TransferRefunded) EventType() string { return "TransferRefunded" }

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
		PayOutAndClose{},
		DebitForTransfer{},
		CreditForTransfer{},
		CompleteTransfer{},
		RefundTransfer{},
	},
	Events: []aggregates.Event{
		AccountOpened{},
		MoneyDeposited{},
		MoneyWithdrawn{},
		AccountClosed{},
		TransferDebited{},
		TransferCredited{},
		TransferCompleted{},
		TransferRefunded{},
		TransferCreditRefused{},
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
	case PayOutAndClose:
		return payOutAndClose(s)
	case DebitForTransfer:
		return debitForTransfer(s, c)
	case CreditForTransfer:
		return creditForTransfer(s, c)
	case CompleteTransfer:
		return completeTransfer(s, c)
	case RefundTransfer:
		return refundTransfer(s, c)
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
	if c.Amount > s.room() {
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
	if err := noPending(s); err != nil {
		return nil, err
	}
	return []aggregates.Event{AccountClosed{}}, nil
}

func payOutAndClose(s Account) ([]aggregates.Event, error) {
	if err := mustBeOpen(s); err != nil {
		return nil, err
	}
	if err := noPending(s); err != nil {
		return nil, err
	}
	var events []aggregates.Event
	if s.Balance > 0 {
		events = append(events, MoneyWithdrawn{Amount: s.Balance, Balance: 0})
	}
	return append(events, AccountClosed{}), nil
}

func noPending(s Account) error {
	if len(s.Pending) > 0 {
		return aggregates.Reject(CodePendingTransfers, "%d outgoing transfer(s) still pending (first: %q); close after they end", len(s.Pending), s.Pending[0].TransferID)
	}
	return nil
}

func debitForTransfer(s Account, c DebitForTransfer) ([]aggregates.Event, error) {
	if err := mustBeOpen(s); err != nil {
		return nil, err
	}
	if c.TransferID == "" || c.To == "" {
		return nil, aggregates.Reject(CodeInvalidTransfer, "a transfer needs a transfer id and a target account")
	}
	if len(c.TransferID) > MaxTransferIDBytes || len(c.To) > MaxAccountIDBytes {
		// Not quoted: the message would repeat what is refused for its size.
		return nil, aggregates.Reject(CodeInvalidTransfer, "transfer id of %d bytes (at most %d) or target id of %d bytes (at most %d)",
			len(c.TransferID), MaxTransferIDBytes, len(c.To), MaxAccountIDBytes)
	}
	if s.pending(c.TransferID) >= 0 {
		return nil, aggregates.Reject(CodeTransferPending, "transfer %q is already pending on this account", c.TransferID)
	}
	if c.Amount <= 0 {
		return nil, aggregates.Reject(CodeInvalidAmount, "transfer amount must be positive, got %d", c.Amount)
	}
	if c.Amount > s.Balance {
		return nil, aggregates.Reject(CodeInsufficientFunds, "balance %d is less than the transfer of %d", s.Balance, c.Amount)
	}
	return []aggregates.Event{TransferDebited{TransferID: c.TransferID, To: c.To, Amount: c.Amount, Balance: s.Balance - c.Amount, Seq: s.DebitSeq + 1}}, nil
}

// creditForTransfer decides a debit on its target, once: credited or
// refused, each an event that moves the credit mark, so that no later
// credit of the same debit (a replayed saga, a re-driven command beyond the
// dedupe window, an account opened after the refusal) has any effect.
func creditForTransfer(s Account, c CreditForTransfer) ([]aggregates.Event, error) {
	// Malformed credits come from no debit (the saga copies a debit's
	// fields, which the source validated): rejected, nothing recorded.
	if c.TransferID == "" || c.From == "" || c.DebitVersion < 1 || c.Seq < 0 {
		return nil, aggregates.Reject(CodeInvalidTransfer, "a credit needs a transfer id, a source account and its debit version")
	}
	if c.Amount <= 0 {
		return nil, aggregates.Reject(CodeInvalidAmount, "transfer amount must be positive, got %d", c.Amount)
	}
	if last := s.creditedUpTo(c.From); c.DebitVersion <= last {
		return nil, aggregates.Reject(CodeAlreadyCredited, "debit %d of %q is decided already (latest credited or refused: %d)", c.DebitVersion, capID(c.From), last)
	}
	refuse := func(r *aggregates.Rejection) ([]aggregates.Event, error) {
		return []aggregates.Event{TransferCreditRefused{TransferID: c.TransferID, From: c.From, DebitVersion: c.DebitVersion, Amount: c.Amount, Seq: c.Seq, Code: r.Code, Reason: r.Message}}, nil
	}
	if len(c.From) > MaxAccountIDBytes {
		// Refused, and the refusal leaves no credit mark (Evolve): a mark
		// per source would keep each such id in this account's state,
		// and a few of them outgrew a snapshot record (every later credit
		// then failed). The rule depends on the command alone, so a
		// replayed credit of the same debit is refused again: its refund
		// has the first one's command id and moves nothing twice.
		return refuse(aggregates.Reject(CodeInvalidTransfer, "source account id of %d bytes, more than %d: a transfer from it is refunded", len(c.From), MaxAccountIDBytes))
	}
	if n, marked := s.markBytes(c.From); !marked && n+len(c.From) > MaxCreditMarkBytes {
		// The marks only grow and a refusal adds none, so a replayed
		// credit of this debit is refused again: its refund is the first
		// one's.
		return refuse(aggregates.Reject(CodeTooManySources, "credit marks of %d bytes would exceed %d: a transfer from a new source is refunded", n+len(c.From), MaxCreditMarkBytes))
	}
	if err := mustBeOpen(s); err != nil {
		r, _ := aggregates.AsRejection(err)
		return refuse(r)
	}
	if c.Amount > s.room() {
		return refuse(aggregates.Reject(CodeInvalidAmount, "credit of %d would overflow the balance of %d", c.Amount, s.Balance))
	}
	return []aggregates.Event{TransferCredited{TransferID: c.TransferID, From: c.From, DebitVersion: c.DebitVersion, Amount: c.Amount, Balance: s.Balance + c.Amount, Seq: c.Seq}}, nil
}

func completeTransfer(s Account, c CompleteTransfer) ([]aggregates.Event, error) {
	if s.pendingSeq(c.Seq, c.TransferID) < 0 {
		return nil, aggregates.Reject(CodeUnknownTransfer, "no pending transfer %q with seq %d on this account", c.TransferID, c.Seq)
	}
	return []aggregates.Event{TransferCompleted(c)}, nil
}

func refundTransfer(s Account, c RefundTransfer) ([]aggregates.Event, error) {
	i := s.pendingSeq(c.Seq, c.TransferID)
	if i < 0 {
		return nil, aggregates.Reject(CodeUnknownTransfer, "no pending transfer %q with seq %d on this account", c.TransferID, c.Seq)
	}
	amount := s.Pending[i].Amount
	return []aggregates.Event{TransferRefunded{TransferID: c.TransferID, Amount: amount, Balance: s.Balance + amount, Reason: c.Reason, Seq: c.Seq}}, nil
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
		// Refusals recorded before the account opened stay decided.
		return Account{Status: StatusOpen, Owner: e.Owner, Currency: e.Currency, Credited: s.Credited, DebitSeq: s.DebitSeq}
	case MoneyDeposited:
		// The event carries the balance after it: it is the fact, and
		// replaying it needs no arithmetic that could disagree.
		s.Balance = e.Balance
	case MoneyWithdrawn:
		s.Balance = e.Balance
	case AccountClosed:
		s.Status = StatusClosed
	case TransferDebited:
		s.Balance = e.Balance
		s.Pending = append(s.Pending[:len(s.Pending):len(s.Pending)], PendingTransfer{TransferID: e.TransferID, To: e.To, Amount: e.Amount, Seq: e.Seq})
		s.DebitSeq = max(s.DebitSeq, e.Seq)
	case TransferCredited:
		s.Balance = e.Balance
		s.Credited = mark(s.Credited, e.From, e.DebitVersion)
	case TransferCreditRefused:
		// A source without a mark that the rules refuse anyway (an id
		// over MaxAccountIDBytes, or one that would take the marks past
		// MaxCreditMarkBytes) keeps none, whatever the refusal's code (on
		// an erased account the processor records its own, CodeErased):
		// the same rule decides its replays, and the mark would hold the
		// id in the state.
		if n, marked := s.markBytes(e.From); marked || (len(e.From) <= MaxAccountIDBytes && n+len(e.From) <= MaxCreditMarkBytes) {
			s.Credited = mark(s.Credited, e.From, e.DebitVersion)
		}
	case TransferCompleted:
		s.Pending = without(s.Pending, e.Seq, e.TransferID)
	case TransferRefunded:
		s.Balance = e.Balance
		s.Pending = without(s.Pending, e.Seq, e.TransferID)
	}
	return s
}

// mark returns marks with from's set to version, as a new slice.
func mark(marks []CreditMark, from string, version int64) []CreditMark {
	out := make([]CreditMark, 0, len(marks)+1)
	found := false
	for _, m := range marks {
		if m.From == from {
			m.DebitVersion, found = version, true
		}
		out = append(out, m)
	}
	if !found {
		out = append(out, CreditMark{From: from, DebitVersion: version})
	}
	return out
}

// without returns pending minus the transfer (seq, id), as a new slice
// (states are values: the caller's slice must not change), nil when empty.
func without(pending []PendingTransfer, seq int64, id string) []PendingTransfer {
	var out []PendingTransfer
	for _, p := range pending {
		if p.Seq != seq || p.TransferID != id {
			out = append(out, p)
		}
	}
	return out
}
