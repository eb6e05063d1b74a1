package topology

// FreezeBeforeEnd makes the processor call f after producing a batch and
// before ending its transaction (f may block: the worker is then frozen
// mid-batch, its open transaction with it).
func FreezeBeforeEnd(c *Config, f func(partitions []int32)) {
	if c.hooks == nil {
		c.hooks = &testHooks{}
	}
	c.hooks.beforeEnd = f
}
