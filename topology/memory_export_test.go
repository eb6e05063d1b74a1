package topology

// MemTableSize exposes Config.memTableSize to the tests.
func MemTableSize(c Config, stores int) uint64 { return c.memTableSize(stores) }
