package topology_test

import (
	"testing"

	"github.com/kcqrs/kcqrs/topology"
)

// One setting sizes the worker: the block cache and the memtables get 1/8
// of the budget each and the Go heap's soft limit the rest, with explicit
// settings taking precedence and the heap never left less than half.
func TestMemoryBudgetSizesTheDefaults(t *testing.T) {
	d := topology.Defaults()
	if d.MemoryBudget != 256<<20 || d.CacheBytes != 32<<20 || d.MemTableBytes != 32<<20 {
		t.Fatalf("defaults: budget %d, cache %d, memtables %d; want 256, 32, 32 MiB", d.MemoryBudget, d.CacheBytes, d.MemTableBytes)
	}
	if got := d.SoftMemoryLimit(); got != 192<<20 {
		t.Fatalf("default soft memory limit %d, want 192 MiB", got)
	}
	if d.FetchMaxBytes > 1<<20 || d.FetchMaxPartitionBytes > d.FetchMaxBytes {
		t.Fatalf("fetch bounds %d/%d: a worker's decoded fetches must stay a small part of the budget", d.FetchMaxBytes, d.FetchMaxPartitionBytes)
	}
	for _, c := range []struct {
		cfg  topology.Config
		want int64
	}{
		{topology.Config{MemoryBudget: 1 << 30}, 768 << 20},
		{topology.Config{MemoryBudget: 1 << 30, CacheBytes: 256 << 20}, 640 << 20},
		{topology.Config{MemoryBudget: 1 << 30, CacheBytes: 1 << 30}, 512 << 20}, // at least half the budget
		{topology.Config{}, 192 << 20},
	} {
		if got := c.cfg.SoftMemoryLimit(); got != c.want {
			t.Errorf("budget %d, cache %d: soft limit %d, want %d", c.cfg.MemoryBudget, c.cfg.CacheBytes, got, c.want)
		}
	}
}

// Each store's memtable is the memtable budget split over the stores held,
// between 1 and 4 MiB.
func TestMemTablesSplitTheBudget(t *testing.T) {
	d := topology.Defaults()
	for _, c := range []struct {
		stores int
		want   uint64
	}{{0, 4 << 20}, {1, 4 << 20}, {8, 4 << 20}, {16, 2 << 20}, {64, 1 << 20}} {
		if got := topology.MemTableSize(d, c.stores); got != c.want {
			t.Errorf("%d stores: memtable %d, want %d", c.stores, got, c.want)
		}
	}
}
