package projection

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

// TestStoreEmptyEndsWithTheCache: a partition's store counts as empty (its
// accounts' first events skip the store read) only while every entry
// written since the scan is in the cache: emptying the cache at its bound,
// or a rebalance, ends it.
func TestStoreEmptyEndsWithTheCache(t *testing.T) {
	var written, forwarded atomic.Int64
	w := newTableWriter(nil, &storeSet{}, Names{Prefix: "t", Version: 1}, 2, &written, &forwarded)
	pw := w.parts[0]
	if _, err := w.totalsLocked(pw); err != nil {
		t.Fatal(err)
	}
	if pw.storeEmpty {
		t.Fatal("a partition without a store counts as empty")
	}
	pw.storeEmpty = true // as after a scan of an empty store
	for i := range cacheEntries/len(w.parts) + 1 {
		w.cacheLocked(pw, fmt.Sprint(i), Account{ID: fmt.Sprint(i), Version: 1})
	}
	if !pw.storeEmpty {
		t.Fatal("filling the cache up to its bound ended storeEmpty")
	}
	w.cacheLocked(pw, "one more", Account{ID: "one more", Version: 1})
	if pw.storeEmpty {
		t.Fatal("the cache was emptied and the store still counts as empty")
	}
	pw.storeEmpty = true
	w.forget()
	if pw.storeEmpty {
		t.Fatal("a rebalance kept storeEmpty")
	}
}

// TestCachedEntryFindsItsBatchEntry: an account's cache entry leads its
// next events to its entry of the pending batch, and after the batch is
// taken, to a new entry of the next one.
func TestCachedEntryFindsItsBatchEntry(t *testing.T) {
	var written, forwarded atomic.Int64
	w := newTableWriter(nil, &storeSet{}, Names{Prefix: "t", Version: 1}, 1, &written, &forwarded)
	pw := w.parts[0]
	done := func(error) {}
	add := func(key string, v int64) {
		_, ce, _ := pw.heldLocked(key)
		w.addLocked(pw, key, ce, Account{ID: key, Version: v}, true, nil, nil, v, done)
	}
	add("a", 1)
	add("b", 1)
	add("a", 2)
	add("a", 3)
	if e := pw.pending.entries; len(e) != 2 || e[0].a.Version != 3 || e[1].a.Version != 1 {
		t.Fatalf("pending entries %+v", e)
	}
	w.take()
	add("b", 2)
	add("a", 4)
	add("b", 3)
	if e := pw.pending.entries; len(e) != 2 || e[0].key != "b" || e[0].a.Version != 3 || e[1].key != "a" || e[1].a.Version != 4 {
		t.Fatalf("pending entries after the swap %+v", e)
	}
	if e := pw.flushing.entries; len(e) != 2 || e[0].a.Version != 3 || e[1].a.Version != 1 {
		t.Fatalf("the taken batch changed: %+v", e)
	}
	if a, _, ok := pw.heldLocked("a"); !ok || a.Version != 4 {
		t.Fatalf("held %+v, %v", a, ok)
	}
}

// TestAFailedFlushFailsEveryLaterBatch: once a batch failed, a later batch
// (here an event that writes nothing) must not release its commit: goka
// fails the group only asynchronously, and sarama commits the highest offset
// marked, which would cover the failed event for good. Deterministic
// companion of TestCommitNeverOvertakesAWrite (which needs the race).
func TestAFailedFlushFailsEveryLaterBatch(t *testing.T) {
	var written, forwarded atomic.Int64
	// No stores: writing the batch fails ("no store").
	w := newTableWriter(nil, &storeSet{}, Names{Prefix: "t", Version: 1}, 1, &written, &forwarded)
	pw := w.parts[0]
	var first, later error
	w.addLocked(pw, "a1", nil, Account{ID: "a1", Version: 1}, true, nil, nil, 0, func(err error) { first = err })
	w.flush()
	if first == nil {
		t.Fatal("the batch had no store to write to and its commit was released")
	}
	later = errors.New("not called")
	if err := w.pass(0, func(err error) { later = err }); err != nil {
		t.Fatal(err)
	}
	w.flush()
	if later == nil {
		t.Fatal("a batch after a failed one released its commit: it would commit past the failed event")
	}
}
