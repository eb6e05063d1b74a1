package projection

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/wire"
)

// Account is the account read model: one entry per account id.
type Account struct {
	ID       string `json:"id"`
	Owner    string `json:"owner,omitempty"`
	Currency string `json:"currency,omitempty"`
	// Status is account.StatusOpen or account.StatusClosed ("" while only
	// events after a gap are known).
	Status  string `json:"status"`
	Balance int64  `json:"balance"`
	// Version is the aggregate version of the last event folded in.
	Version int64 `json:"version"`
	// Gaps counts version gaps seen on this account (each one reported).
	Gaps int64 `json:"gaps,omitempty"`
	// Skipped counts events of this account the projection could not handle
	// (dead-lettered); their versions are consumed, their effect is not.
	Skipped int64 `json:"skipped,omitempty"`
	// UpdatedMillis is the timestamp of the last event folded in.
	UpdatedMillis int64 `json:"updatedMillis"`
}

// OwnerAccounts is the accounts-by-owner read model: one entry per owner,
// keyed by owner, holding the owner's accounts (the latest version of each).
type OwnerAccounts struct {
	Owner    string             `json:"owner"`
	Accounts map[string]Account `json:"accounts"`
}

// TotalShards is how many entries share the running total of one currency
// (keys "<currency>|<shard>", by account id). Each entry keeps the latest
// balance and version of its accounts, so that a redelivered update changes
// nothing; sharding keeps those entries small, since every update re-encodes
// and re-writes one. Queries add the shards up.
const TotalShards = 32

// TotalKey is the totals-table key of an account's currency shard.
func TotalKey(currency, accountID string) string {
	return fmt.Sprintf("%s|%02d", currency, (murmur2Sum([]byte(accountID))&0x7fffffff)%TotalShards)
}

// CurrencyTotal is one shard of the running total of money of a currency
// (see TotalShards).
type CurrencyTotal struct {
	Currency string `json:"currency"`
	Total    int64  `json:"total"`
	Open     int    `json:"openAccounts"`
	// Accounts holds the latest known state of each account in the currency.
	Accounts map[string]Account `json:"accounts,omitempty"`
}

// Outcome is what folding one event did.
type Outcome int

// Outcomes of FoldAccount.
const (
	// Applied: the event was the next version and was folded in.
	Applied Outcome = iota
	// Stale: the event is at or below the held version (a redelivery): nothing changed.
	Stale
	// AppliedAfterGap: versions were missing before this event; it was folded
	// in (account events carry the resulting balance) and the gap must be reported.
	AppliedAfterGap
	// Unhandled: the event type is unknown to this projection: its version was
	// consumed, nothing else changed, and it must be dead-lettered.
	Unhandled
)

func (o Outcome) String() string {
	return [...]string{"applied", "stale", "applied_after_gap", "unhandled"}[o]
}

// FoldAccount folds one event of an account into the entry cur (the zero
// Account for a new one). It is the whole account projection: pure, so tests
// can fold the events topic with it and compare.
func FoldAccount(cur Account, env wire.Event, ev aggregates.Event) (Account, Outcome) {
	if env.Version <= cur.Version {
		return cur, Stale
	}
	next := cur
	next.ID = env.AggregateID
	outcome := Applied
	if env.Version != cur.Version+1 {
		next.Gaps++
		outcome = AppliedAfterGap
	}
	next.Version = env.Version
	next.UpdatedMillis = env.TimestampMillis
	switch e := deref(ev).(type) {
	case account.AccountOpened:
		next.Owner, next.Currency, next.Status, next.Balance = e.Owner, e.Currency, account.StatusOpen, 0
	case account.MoneyDeposited:
		next.Balance = e.Balance
	case account.MoneyWithdrawn:
		next.Balance = e.Balance
	case account.AccountClosed:
		next.Status = account.StatusClosed
	case account.TransferDebited:
		// The amount is in flight until the target's credit (or the refund):
		// it has left this balance and is not yet in the other.
		next.Balance = e.Balance
	case account.TransferCredited:
		next.Balance = e.Balance
	case account.TransferRefunded:
		next.Balance = e.Balance
	case account.TransferCompleted:
		// Only the source's pending list changes; the balance already moved.
	case account.TransferCreditRefused:
		// This account could not take a credit (closed, never opened): no
		// money moved here; the source gets its refund.
	default:
		next.Skipped++
		if outcome == Applied {
			outcome = Unhandled
		}
	}
	return next, outcome
}

// deref turns a pointer event into its value, whichever form the registry
// decoded it as.
func deref(ev aggregates.Event) any {
	if v := reflect.ValueOf(ev); v.Kind() == reflect.Pointer && !v.IsNil() {
		return v.Elem().Interface()
	}
	return ev
}

// MergeOwner records a into the owner entry; false if the entry already held
// that account at a.Version or later (a redelivery: nothing changes).
func MergeOwner(o *OwnerAccounts, a Account) bool {
	if old, ok := o.Accounts[a.ID]; ok && old.Version >= a.Version {
		return false
	}
	if o.Accounts == nil {
		o.Accounts = map[string]Account{}
	}
	o.Owner = a.Owner
	o.Accounts[a.ID] = a
	return true
}

// MergeTotal records a into the currency total; false on a redelivery.
func MergeTotal(c *CurrencyTotal, a Account) bool {
	if old, ok := c.Accounts[a.ID]; ok && old.Version >= a.Version {
		return false
	}
	if c.Accounts == nil {
		c.Accounts = map[string]Account{}
	}
	c.Currency = a.Currency
	c.Accounts[a.ID] = Account{ID: a.ID, Status: a.Status, Balance: a.Balance, Version: a.Version}
	c.Total, c.Open = 0, 0
	for _, x := range c.Accounts {
		c.Total += x.Balance
		if x.Status == account.StatusOpen {
			c.Open++
		}
	}
	return true
}

// jsonCodec is the goka codec of the read-model tables: JSON, so a table
// topic is readable with any Kafka tool. Decode returns a *T.
type jsonCodec[T any] struct{}

func (jsonCodec[T]) Encode(v any) ([]byte, error) {
	switch v.(type) {
	case T, *T:
		return json.Marshal(v)
	}
	return nil, fmt.Errorf("projection: codec: cannot encode %T as %T", v, *new(T))
}

func (jsonCodec[T]) Decode(data []byte) (any, error) {
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("projection: codec: decode %T: %w", *v, err)
	}
	return v, nil
}

// rawCodec passes bytes through: the projector decodes events itself, so
// that an undecodable one is dead-lettered instead of failing the group.
type rawCodec struct{}

func (rawCodec) Encode(v any) ([]byte, error) {
	b, ok := v.([]byte)
	if !ok {
		return nil, fmt.Errorf("projection: raw codec: %T is not []byte", v)
	}
	return b, nil
}

func (rawCodec) Decode(data []byte) (any, error) { return data, nil }
