package projection

import (
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
