package topology

import "container/list"

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
type stateCache struct {
	max   int
	lru   list.List // of *cacheEntry, most recent first
	parts map[int32]map[string]*list.Element
}

type cacheEntry struct {
	part int32
	a    *aggState
}

// newStateCache returns a cache of at most max aggregates; nil (no cache)
// when max < 1.
func newStateCache(max int) *stateCache {
	if max < 1 {
		return nil
	}
	return &stateCache{max: max, parts: map[int32]map[string]*list.Element{}}
}

// take returns the committed state of an aggregate and removes it: the
// caller's batch owns it now and returns it with put once committed.
func (c *stateCache) take(part int32, key string) *aggState {
	if c == nil {
		return nil
	}
	el := c.parts[part][key]
	if el == nil {
		return nil
	}
	c.lru.Remove(el)
	delete(c.parts[part], key)
	return el.Value.(*cacheEntry).a
}

// put records a committed aggregate state.
func (c *stateCache) put(part int32, a *aggState) {
	if c == nil {
		return
	}
	m := c.parts[part]
	if m == nil {
		m = map[string]*list.Element{}
		c.parts[part] = m
	}
	if el := m[a.key]; el != nil {
		el.Value.(*cacheEntry).a = a
		c.lru.MoveToFront(el)
		return
	}
	m[a.key] = c.lru.PushFront(&cacheEntry{part: part, a: a})
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		e := old.Value.(*cacheEntry)
		c.lru.Remove(old)
		delete(c.parts[e.part], e.a.key)
	}
}

// dropPartition forgets every aggregate of a partition.
func (c *stateCache) dropPartition(part int32) {
	if c == nil {
		return
	}
	for _, el := range c.parts[part] {
		c.lru.Remove(el)
	}
	delete(c.parts, part)
}

// len is the number of cached aggregates.
func (c *stateCache) len() int {
	if c == nil {
		return 0
	}
	return c.lru.Len()
}

// cacheCommitted returns the aggregates of a committed batch to the cache:
// their state is now what Kafka and the store hold.
func (p *Processor) cacheCommitted(ps *partitionState) {
	for _, a := range ps.order {
		a.dirty, a.encoded = false, nil
		p.states.put(ps.p, a)
	}
}
