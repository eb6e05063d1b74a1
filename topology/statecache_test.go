package topology

import "testing"

func TestStateCacheBoundTakeAndDrop(t *testing.T) {
	c := newStateCache(3)
	for i, k := range []string{"a", "b", "c", "d"} {
		c.put(int32(i%2), &aggState{key: k, version: int64(i)})
	}
	if c.len() != 3 {
		t.Fatalf("len %d, want the bound 3", c.len())
	}
	if c.take(0, "a") != nil {
		t.Fatal("the least recently used entry survived past the bound")
	}
	// take hands the entry over: a batch that then aborts must not find it.
	if a := c.take(1, "b"); a == nil || a.version != 1 {
		t.Fatalf("take b = %+v", a)
	}
	if c.take(1, "b") != nil {
		t.Fatal("a taken entry is still cached")
	}
	if c.take(0, "b") != nil {
		t.Fatal("entries of another partition are visible")
	}
	c.put(1, &aggState{key: "b", version: 9})
	c.dropPartition(0) // holds "c"
	if c.take(0, "c") != nil {
		t.Fatal("dropPartition kept an entry")
	}
	if a := c.take(1, "b"); a == nil || a.version != 9 {
		t.Fatalf("dropPartition(0) lost partition 1's entry: %+v", a)
	}
	if newStateCache(0) != nil || newStateCache(-1).take(0, "x") != nil {
		t.Fatal("a disabled cache must be nil and empty")
	}
}
