package projection

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/lovoo/goka"
)

// partitionTotals are the currency counters of the accounts-table
// partitions this projector's accounts group owns (see CurrencyTotal).
//
// A partition's counters are not stored: they are the sum of the account
// entries in the partition's local store, computed by scanning it on the
// partition's first event after each rebalance, and then kept in step with
// every entry the group writes. They are therefore exactly what the store
// holds, including entries whose table emit was lost (the stale path re-sends
// them), and a record sent with them is a complete state, never a delta: a
// lost or repeated one is repaired by the next.
type partitionTotals struct {
	stores *storeSet
	table  string

	mu    sync.Mutex
	parts map[int32]map[string]*CurrencyTotal
}

func newPartitionTotals(stores *storeSet, table string) *partitionTotals {
	return &partitionTotals{stores: stores, table: table, parts: map[int32]map[string]*CurrencyTotal{}}
}

// reset forgets every partition's counters (after a rebalance).
func (t *partitionTotals) reset() {
	t.mu.Lock()
	t.parts = map[int32]map[string]*CurrencyTotal{}
	t.mu.Unlock()
}

// partition returns the counters of partition p, scanning its store the
// first time. Called with t.mu held.
func (t *partitionTotals) partition(p int32) (map[string]*CurrencyTotal, error) {
	if m, ok := t.parts[p]; ok {
		return m, nil
	}
	m := map[string]*CurrencyTotal{}
	if st := t.stores.get(t.table, p); st != nil {
		it, err := st.Iterator()
		if err != nil {
			return nil, err
		}
		defer it.Release()
		for it.Next() {
			v, err := it.Value()
			if err != nil {
				return nil, err
			}
			var a Account
			if err := json.Unmarshal(v, &a); err != nil {
				return nil, fmt.Errorf("projection: scan %s/%d: key %q: %w", t.table, p, it.Key(), err)
			}
			counter(m, a.Currency, p).add(a, 1)
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("projection: scan %s/%d: %w", t.table, p, err)
		}
	}
	t.parts[p] = m
	return m, nil
}

func counter(m map[string]*CurrencyTotal, currency string, p int32) *CurrencyTotal {
	c := m[currency]
	if c == nil {
		c = &CurrencyTotal{Currency: currency, Partition: p}
		m[currency] = c
	}
	return c
}

// fold moves an account's contribution from cur to next and returns a copy
// of next's currency counters (nil without a currency).
func (t *partitionTotals) fold(ctx goka.Context, cur, next Account) *CurrencyTotal {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, err := t.partition(ctx.Partition())
	if err != nil {
		ctx.Fail(err)
		return nil
	}
	if cur.Currency != "" {
		counter(m, cur.Currency, ctx.Partition()).add(cur, -1)
	}
	if next.Currency == "" {
		return nil
	}
	c := counter(m, next.Currency, ctx.Partition())
	c.add(next, 1)
	out := *c
	return &out
}

// current returns a copy of a's currency counters (nil without a currency).
func (t *partitionTotals) current(ctx goka.Context, a Account) *CurrencyTotal {
	if a.Currency == "" {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m, err := t.partition(ctx.Partition())
	if err != nil {
		ctx.Fail(err)
		return nil
	}
	out := *counter(m, a.Currency, ctx.Partition())
	return &out
}
