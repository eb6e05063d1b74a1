package topology

// stateCache keeps the decoded state of recently used aggregates between
// transactions, so a hot aggregate costs neither a Pebble read nor a
// snapshot decode per batch. It is bounded (least recently used entries
// go first) and used by the run loop only.
//
// It must never be ahead of Kafka: entries are put only after their
// transaction committed (Processor.applyCommitted), and a batch that does
// not commit forgets every aggregate it touched (Processor.discard), since
// the batch may have changed those very values in place. A catch-up from
// the changelog and a lost partition drop the partition's entries.
//
// Its list is intrusive (each cached aggState has a cacheNode, made once and
// kept across take and put): a hot aggregate taken and put back once per
// batch costs no allocation.
type stateCache struct {
	max   int
	n     int
	head  cacheNode // sentinel: head.next is the most recent
	parts map[int32]map[string]*aggState
}

// cacheNode links a cached aggregate into the cache's list.
type cacheNode struct {
	prev, next *cacheNode
	part       int32
	a          *aggState
}

// newStateCache returns a cache of at most max aggregates; nil (no cache)
// when max < 1.
func newStateCache(max int) *stateCache {
	if max < 1 {
		return nil
	}
	c := &stateCache{max: max, parts: map[int32]map[string]*aggState{}}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

func (c *stateCache) unlink(n *cacheNode) {
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next = nil, nil
	c.n--
}

func (c *stateCache) pushFront(n *cacheNode) {
	n.prev, n.next = &c.head, c.head.next
	c.head.next.prev = n
	c.head.next = n
	c.n++
}

// take returns the committed state of an aggregate and removes it: the
// caller's batch owns it now and returns it with put once committed.
func (c *stateCache) take(part int32, key string) *aggState {
	if c == nil {
		return nil
	}
	a := c.parts[part][key]
	if a == nil {
		return nil
	}
	c.unlink(a.node)
	delete(c.parts[part], key)
	return a
}

// takeKey is take with the key as bytes (looked up without a copy).
func (c *stateCache) takeKey(part int32, key []byte) *aggState {
	if c == nil {
		return nil
	}
	m := c.parts[part]
	a := m[string(key)]
	if a == nil {
		return nil
	}
	c.unlink(a.node)
	delete(m, a.key)
	return a
}

// put records a committed aggregate state.
func (c *stateCache) put(part int32, a *aggState) {
	if c == nil {
		return
	}
	m := c.parts[part]
	if m == nil {
		m = map[string]*aggState{}
		c.parts[part] = m
	}
	if old := m[a.key]; old != nil {
		c.unlink(old.node)
	}
	if a.node == nil || a.node.a != a {
		// A new aggregate, or a copy of one (its node is the original's).
		a.node = &cacheNode{a: a}
	} else if a.node.next != nil {
		c.unlink(a.node) // cached under another partition (not expected)
		delete(c.parts[a.node.part], a.key)
	}
	a.node.part = part
	m[a.key] = a
	c.pushFront(a.node)
	for c.n > c.max {
		old := c.head.prev
		c.unlink(old)
		delete(c.parts[old.part], old.a.key)
	}
}

// dropPartition forgets every aggregate of a partition.
func (c *stateCache) dropPartition(part int32) {
	if c == nil {
		return
	}
	for _, a := range c.parts[part] {
		c.unlink(a.node)
	}
	delete(c.parts, part)
}

// len is the number of cached aggregates.
func (c *stateCache) len() int {
	if c == nil {
		return 0
	}
	return c.n
}

// cacheCommitted returns the aggregates of a committed batch to the cache:
// their state is now what Kafka and the store hold.
func (p *Processor) cacheCommitted(ps *partitionState) {
	for _, a := range ps.order {
		a.dirty, a.encoded = false, nil
		p.states.put(ps.p, a)
	}
}
