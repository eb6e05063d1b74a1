package projection

import (
	"encoding/json"
	"fmt"
	"net/url"
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

// OwnerKey is the owners-table key of one account of an owner: the owner,
// path-escaped (so it holds no '/'), a '/', and the account id. One entry
// per (owner, account) keeps every entry the size of one account, however
// many accounts an owner has; an owner's accounts are the keys with prefix
// OwnerPrefix(owner), in account id order.
func OwnerKey(owner, accountID string) string { return OwnerPrefix(owner) + accountID }

// OwnerPrefix is the prefix of every owners-table key of an owner.
func OwnerPrefix(owner string) string { return url.PathEscape(owner) + "/" }

// CurrencyTotal is the money of one currency in one partition of the
// accounts table: fixed-size counters, whatever the number of accounts.
// The accounts group owning partition p keeps them (see partitionTotals),
// changes them by each account's previous and new contribution when it folds
// an event, and sends the whole counter (not a delta) to the totals table
// under TotalKey(currency, p): a lost or repeated update is repaired by the
// next one. Queries add up the partitions.
type CurrencyTotal struct {
	Currency  string `json:"currency"`
	Partition int32  `json:"partition"`
	Total     int64  `json:"total"`
	Accounts  int64  `json:"accounts"`
	Open      int64  `json:"openAccounts"`
	// Seq orders the updates of one key: the events-topic offset (of
	// partition Partition) of the event after which the counters were sent.
	// An update with a lower Seq than the held one is older: ignored.
	Seq int64 `json:"seq"`
}

// TotalKey is the totals-table key of a currency's counters in partition
// p of the accounts table.
func TotalKey(currency string, p int32) string { return fmt.Sprintf("%s|%04d", currency, p) }

// contribution is what one account adds to its currency's counters.
func (t *CurrencyTotal) add(a Account, sign int64) {
	if a.Currency == "" {
		return
	}
	t.Total += sign * a.Balance
	t.Accounts += sign
	if a.Status == account.StatusOpen {
		t.Open += sign
	}
}

// MergeTotal records an update of a currency's counters in one partition;
// false if the held counters are newer (a reordered or repeated update:
// nothing changes).
func MergeTotal(held *CurrencyTotal, upd CurrencyTotal) bool {
	if held.Currency != "" && upd.Seq < held.Seq {
		return false
	}
	*held = upd
	return true
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

// MergeOwner records a into the owner entry held (nil: none yet); false
// if held is already at a.Version or later (a redelivery: nothing changes).
func MergeOwner(held *Account, a Account) bool {
	return held == nil || held.Version < a.Version
}

// jsonCodec is the goka codec of the read-model tables: JSON, so a table
// topic is readable with any Kafka tool. Decode returns a *T.
type jsonCodec[T any] struct{}

func (jsonCodec[T]) Encode(v any) ([]byte, error) {
	switch a := v.(type) {
	case *Account: // the account tables: without reflection
		if a != nil {
			return encodeAccount(a)
		}
	case Account:
		return encodeAccount(&a)
	}
	switch v.(type) {
	case T, *T:
		return json.Marshal(v)
	}
	return nil, fmt.Errorf("projection: codec: cannot encode %T as %T", v, *new(T))
}

func (jsonCodec[T]) Decode(data []byte) (any, error) {
	v := new(T)
	var err error
	if a, ok := any(v).(*Account); ok {
		err = unmarshalAccount(data, a)
	} else {
		err = json.Unmarshal(data, v)
	}
	if err != nil {
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
