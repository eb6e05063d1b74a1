package projection

import (
	"hash"
	"sync"

	"github.com/lovoo/goka"
)

// commitGate orders the commits of a group on goka's own path (the owners
// and totals groups). goka commits a record as soon as its own emits are
// acknowledged, and sarama commits the highest offset marked in a
// partition: a record that emits nothing (an erased account's entry the
// group never held), or whose emits went out in a later, successful
// produce, was committed past a record whose table emit was still waiting
// in goka's producer (it flushes every 100 ms) or failed. The group then
// fails, but the commit covers the failed record, which never comes again
// (TestOwnersCommitNeverOvertakesAWrite).
//
// The gate holds a deferred commit of every record (taken by guard) and
// releases them in the partition's order, each once the record's handler
// returned and every emit made so far on the partition was acknowledged;
// after a failed emit it releases nothing any more, it fails every record
// held (the group stops). It learns of the emits through the group's
// producer (gatedProducer): goka calls it from the handler, on the
// partition's goroutine, with the record's key (the table entry, a delete
// and a dead letter are all under the record's key). Two partitions may
// handle records of one key at once (a record on a partition its key does
// not hash to), so the handler's context (failWatch) also tells the gate
// when it is in a call that may emit (arm), and an emit is the armed
// record's (TestGateTellsEmitsOfOneKeyApart).
type commitGate struct {
	mu     sync.Mutex
	failed error
	parts  []gatePart
}

type gatePart struct {
	cur *gateEntry // the record whose handler runs
	// arming counts the calls of cur's handler into a goka context
	// method that may emit (failWatch), under way now.
	arming int
	queue  []*gateEntry // records not released yet, in order, from head on
	head   int
}

type gateEntry struct {
	p       int32
	key     string
	pending int // emits not acknowledged, +1 while the handler runs
	done    func(error)
}

func newCommitGate(parts int32) *commitGate {
	return &commitGate{parts: make([]gatePart, parts)}
}

// begin holds ctx's commit back until end and the acknowledgements of its
// emits (and of every record's before it). nil for a partition the gate
// does not have (goka's own commit then applies).
func (g *commitGate) begin(ctx goka.Context) *gateEntry {
	if g == nil {
		return nil
	}
	p := ctx.Partition()
	if p < 0 || int(p) >= len(g.parts) {
		return nil
	}
	e := &gateEntry{p: p, key: ctx.Key(), pending: 1, done: ctx.DeferCommit()}
	g.mu.Lock()
	gp := &g.parts[p]
	gp.cur = e
	gp.queue = append(gp.queue, e)
	g.mu.Unlock()
	return e
}

// end is called when e's handler returned; err (if any) fails the group.
func (g *commitGate) end(e *gateEntry, err error) {
	if g == nil || e == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.parts[e.p].cur == e {
		g.parts[e.p].cur = nil
	}
	g.settleLocked(e, err)
}

// arm tells the gate that e's handler calls (d 1) or called (d -1) a
// goka context method that may emit: an emit under e's key is then e's,
// also while another partition's handler runs under the same key (a
// record on a partition its key does not hash to).
func (g *commitGate) arm(e *gateEntry, d int) {
	if g == nil || e == nil {
		return
	}
	g.mu.Lock()
	g.parts[e.p].arming += d
	g.mu.Unlock()
}

// emitting returns the record whose handler emits under key now (nil if
// none: goka's own commit then applies) and counts the emit: a record
// under key whose handler is in an emitting call (arm), the key's own
// partition first; failing that, any record under key.
func (g *commitGate) emitting(key string) *gateEntry {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.findLocked(key, true)
	if e == nil {
		e = g.findLocked(key, false)
	}
	if e != nil {
		e.pending++
	}
	return e
}

func (g *commitGate) findLocked(key string, armed bool) *gateEntry {
	is := func(gp *gatePart) bool {
		return gp.cur != nil && gp.cur.key == key && (!armed || gp.arming > 0)
	}
	if gp := &g.parts[murmur2String(key)%uint32(len(g.parts))]; is(gp) {
		return gp.cur
	}
	for i := range g.parts {
		if is(&g.parts[i]) {
			return g.parts[i].cur
		}
	}
	return nil
}

// emitted settles one emit of e.
func (g *commitGate) emitted(e *gateEntry, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.settleLocked(e, err)
}

// settleLocked counts one of e's pending items done and releases what can
// be released. The deferred commits are called with g.mu held: in order,
// and goka's context never calls back into the gate.
func (g *commitGate) settleLocked(e *gateEntry, err error) {
	e.pending--
	if err != nil && g.failed == nil {
		g.failed = err
	}
	if g.failed != nil {
		// Every partition: nothing held is committed any more.
		for i := range g.parts {
			gp := &g.parts[i]
			for _, h := range gp.queue[gp.head:] {
				h.done(g.failed)
			}
			clear(gp.queue)
			gp.queue, gp.head = gp.queue[:0], 0
		}
		return
	}
	gp := &g.parts[e.p]
	for gp.head < len(gp.queue) && gp.queue[gp.head].pending == 0 {
		gp.queue[gp.head].done(nil)
		gp.queue[gp.head] = nil
		gp.head++
	}
	if gp.head == len(gp.queue) {
		gp.queue, gp.head = gp.queue[:0], 0
	} else if gp.head > 1024 && gp.head > len(gp.queue)/2 {
		n := copy(gp.queue, gp.queue[gp.head:])
		clear(gp.queue[n:])
		gp.queue, gp.head = gp.queue[:n], 0
	}
}

// gatedProducer is a goka producer that tells the gate of every emit.
type gatedProducer struct {
	goka.Producer
	g *commitGate
}

func (p *gatedProducer) Emit(topic, key string, value []byte) *goka.Promise {
	return p.EmitWithHeaders(topic, key, value, nil)
}

func (p *gatedProducer) EmitWithHeaders(topic, key string, value []byte, headers goka.Headers) *goka.Promise {
	e := p.g.emitting(key)
	prom := p.Producer.EmitWithHeaders(topic, key, value, headers)
	if e != nil {
		prom.Then(func(err error) { p.g.emitted(e, err) })
	}
	return prom
}

// producerBuilder wraps build's producers.
func (g *commitGate) producerBuilder(build goka.ProducerBuilder) goka.ProducerBuilder {
	return func(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
		pr, err := build(brokers, clientID, hasher)
		if err != nil {
			return nil, err
		}
		return &gatedProducer{Producer: pr, g: g}, nil
	}
}
