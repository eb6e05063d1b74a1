package topology

import "github.com/cockroachdb/pebble/v2/vfs"

// FreezeBeforeEnd makes the processor call f after producing a batch and
// before ending its transaction (f may block: the worker is then frozen
// mid-batch, its open transaction with it).
func FreezeBeforeEnd(c *Config, f func(partitions []int32)) {
	if c.hooks == nil {
		c.hooks = &testHooks{}
	}
	c.hooks.beforeEnd = f
}

// AfterEnd makes the processor call f after each transaction ended, with
// whether it committed and the store checkpoints of the batch's partitions.
func AfterEnd(c *Config, f func(committed bool, checkpoints map[int32]int64)) {
	if c.hooks == nil {
		c.hooks = &testHooks{}
	}
	c.hooks.afterEnd = f
}

// FailStoreWrite makes the processor's post-commit store write of a
// partition fail whenever f returns an error.
func FailStoreWrite(c *Config, f func(partition int32) error) {
	if c.hooks == nil {
		c.hooks = &testHooks{}
	}
	c.hooks.storeApply = f
}

// StoreFS makes the processor open its stores on fs with the given memtable
// size (0: the default).
func StoreFS(c *Config, fs vfs.FS, memTableSize uint64) {
	if c.hooks == nil {
		c.hooks = &testHooks{}
	}
	c.hooks.storeFS, c.hooks.storeMemTable = fs, memTableSize
}

// ApplyBacklog is the number of committed batches whose store write is
// queued and not yet done (applier.go).
func ApplyBacklog(p *Processor) int64 { return p.applyBacklog.Load() }

// OnHandOver makes the processor call f when it hands the store of a
// revoked partition to its tailer.
func OnHandOver(c *Config, f func(partition int32)) {
	if c.hooks == nil {
		c.hooks = &testHooks{}
	}
	c.hooks.handOver = f
}

// OnDrainWait makes the processor call f whenever its run loop starts
// waiting for queued store writes to land.
func OnDrainWait(c *Config, f func()) {
	if c.hooks == nil {
		c.hooks = &testHooks{}
	}
	c.hooks.drainWait = f
}
