package topology

import (
	"math"
	"os"
	"runtime/debug"
)

// Memory. A worker's resident memory is its Go heap plus what Pebble holds
// outside it (the shared block cache and the stores' memtables, allocated
// manually). One setting, Config.MemoryBudget, sizes all three: the cache
// and the memtables get 1/8 each by default, and the Go heap the rest,
// enforced by the runtime's soft memory limit. Without that limit the
// garbage collector lets the heap grow to twice its live size, and that
// headroom, not data, was most of a busy worker's RSS (BENCHMARKS.md,
// "Memory and restore follow-up").

// DefaultMemoryBudget is Config.MemoryBudget's default.
const DefaultMemoryBudget = 256 << 20

// Bounds of one store's memtable (Config.MemTableBytes): below 1 MiB a
// store flushes tiny tables all the time; 4 MiB was the fixed size before.
const (
	minMemTable = 1 << 20
	maxMemTable = 4 << 20
)

// memTableSize is the memtable size of a store opened while the worker
// holds stores stores (the new one included). The budget is for the
// mutable memtables; one being flushed is held only until its table is
// written.
func (c *Config) memTableSize(stores int) uint64 {
	per := c.MemTableBytes / int64(max(stores, 1))
	return uint64(min(max(per, minMemTable), maxMemTable))
}

// SoftMemoryLimit is the soft memory limit of the Go runtime that the
// configuration's MemoryBudget implies: the budget less what Pebble holds
// outside the Go heap (CacheBytes and MemTableBytes), and at least half the
// budget. Call it on a configuration after Defaults or New has filled it.
func (c Config) SoftMemoryLimit() int64 {
	budget := c.MemoryBudget
	if budget == 0 {
		budget = DefaultMemoryBudget
	}
	cache, mem := c.CacheBytes, c.MemTableBytes
	if cache == 0 {
		cache = budget / 8
	}
	if mem == 0 {
		mem = budget / 8
	}
	return max(budget-cache-mem, budget/2)
}

// ApplySoftMemoryLimit sets the Go runtime's soft memory limit to
// c.SoftMemoryLimit() unless one is set already (GOMEMLIMIT in the
// environment, or an earlier debug.SetMemoryLimit), and returns the limit
// in force. The worker binaries call it; Processor.Run does not, because
// the limit is process-wide: a process that also embeds a broker (the demo,
// tests, the benchmark's parent) holds far more than one worker's memory,
// and a limit below its live heap makes the collector run without pause.
func ApplySoftMemoryLimit(c Config) int64 {
	cur := debug.SetMemoryLimit(-1)
	if _, env := os.LookupEnv("GOMEMLIMIT"); env || cur != math.MaxInt64 {
		return cur
	}
	limit := c.SoftMemoryLimit()
	debug.SetMemoryLimit(limit)
	return limit
}
