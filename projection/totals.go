package projection

import "fmt"

// The currency counters of the accounts-table partitions this projector's
// accounts group owns (see CurrencyTotal) are kept by the writer, per
// partition (partWriter.totals), under the partition's lock.
//
// A partition's counters are not stored: they are the sum of the account
// entries in the partition's local store, computed by scanning it on the
// partition's first event after each rebalance, and then kept in step with
// every entry the group writes. They are therefore exactly what the store
// holds, including entries whose table emit was lost (the stale path re-sends
// them), and a record sent with them is a complete state, never a delta: a
// lost or repeated one is repaired by the next.

// counterState is a partition's counters of one currency, and the pending
// batch that last listed them as changed.
type counterState struct {
	CurrencyTotal
	gen uint64
}

// totalsLocked returns the counters of pw's partition, scanning its store
// the first time after a rebalance. Called with pw.mu held; nothing of the
// partition is pending then that the store lacks (goka waits for every
// deferred commit of a partition before a rebalance).
func (w *tableWriter) totalsLocked(pw *partWriter) (map[string]*counterState, error) {
	if pw.totals != nil {
		return pw.totals, nil
	}
	m := map[string]*counterState{}
	empty := false
	if st := w.stores.get(w.table, pw.p); st != nil {
		empty = true
		it, err := st.Iterator()
		if err != nil {
			return nil, err
		}
		defer it.Release()
		for it.Next() {
			empty = false
			v, err := it.Value()
			if err != nil {
				return nil, err
			}
			var a Account
			if err := unmarshalAccount(v, &a); err != nil {
				return nil, fmt.Errorf("projection: scan %s/%d: key %q: %w", w.table, pw.p, it.Key(), err)
			}
			if a.Currency != "" {
				counter(m, a.Currency, pw.p).add(a, 1)
			}
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("projection: scan %s/%d: %w", w.table, pw.p, err)
		}
	}
	pw.totals, pw.storeEmpty = m, empty
	return m, nil
}

func counter(m map[string]*counterState, currency string, p int32) *counterState {
	c := m[currency]
	if c == nil {
		c = &counterState{CurrencyTotal: CurrencyTotal{Currency: currency, Partition: p}}
		m[currency] = c
	}
	return c
}

// foldTotalsLocked moves an account's contribution from cur to next and
// returns next's currency counters (nil without a currency). Called with
// pw.mu held.
func (w *tableWriter) foldTotalsLocked(pw *partWriter, cur, next Account) (*counterState, error) {
	m, err := w.totalsLocked(pw)
	if err != nil {
		return nil, err
	}
	if cur.Currency != "" {
		counter(m, cur.Currency, pw.p).add(cur, -1)
	}
	if next.Currency == "" {
		return nil, nil
	}
	c := counter(m, next.Currency, pw.p)
	c.add(next, 1)
	return c, nil
}

// currentTotalsLocked returns a's currency counters (nil without a
// currency). Called with pw.mu held.
func (w *tableWriter) currentTotalsLocked(pw *partWriter, a Account) (*counterState, error) {
	if a.Currency == "" {
		return nil, nil
	}
	m, err := w.totalsLocked(pw)
	if err != nil {
		return nil, err
	}
	return counter(m, a.Currency, pw.p), nil
}
