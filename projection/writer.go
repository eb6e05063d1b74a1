package projection

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// tableWriter is the accounts group's output path. goka's SetValue and Emit
// write the store and produce one record at a time, through sarama's async
// producer and a promise per record, and goka's success callback writes the
// table offset to the store once per record: that was the projector's bound
// (five produces and ten store writes per event, serialized on sarama's
// producer). Instead, the accounts group's callback folds an event, puts the
// new entry into a pending batch (which later reads of the same key see
// first) and defers the event's commit (goka's Context.DeferCommit). A
// flusher then, per batch: encodes each account's last entry of the batch
// once and writes them to each partition's store in one Pebble batch,
// produces them (the table is compacted: an entry another event of the same
// batch replaced would be dropped by compaction anyway), the owner-index
// records, the currency counters of each partition the batch changed (one
// record per currency and partition per batch, not per event) and the
// batch's dead letters with one franz-go client, waits for every acknowledgement, stores each table
// partition's last offset once, and only then releases the batch's commits.
//
// The guarantees of goka's own path hold: the store is written before the
// produces (as goka does), an event's offset is committed only after all of
// its records were acknowledged, a failed produce fails the group (the
// events since the last commit come again; the stale path re-sends the held
// entry), and a table record's partition is its event's partition.
//
// State is per partition (partWriter), each with its own lock: goka runs one
// goroutine per partition, so a handler takes one uncontended lock per event
// (the flusher takes it only to swap the pending batch).
type tableWriter struct {
	cl       *kgo.Client
	stores   *storeSet
	table    string // the accounts table topic
	byOwner  string
	byCurr   string
	parts    []*partWriter // by partition: every topic of the version has len(parts)
	maxBatch int           // events per flush before the flusher is woken early
	interval time.Duration

	written, forwarded *atomic.Int64

	n    atomic.Int64 // events pending, all partitions
	kick chan struct{}

	mu     sync.Mutex
	space  *sync.Cond // signalled (with mu) when a flush took the pending batches
	closed bool
	// failed is the first failed flush's error; every later batch fails
	// with it. Flushes are sequential, but a failed batch only fails the
	// group asynchronously (goka fails it once the event's context is
	// done), and sarama commits the highest offset marked: a later batch
	// written meanwhile (an event that writes nothing, say) would mark an
	// offset past the failed events, and the commit at the group's stop
	// would cover them (TestCommitNeverOvertakesAWrite).
	failed error
}

// partWriter is one partition's state: the pending batch, the batch being
// flushed, the cache of entries and the partition's currency counters.
type partWriter struct {
	p  int32
	mu sync.Mutex
	// pending is being filled; flushing is being written to the store
	// (readers look there after the cache and pending).
	pending, flushing *pendingPart
	// cache holds the entries last written or read, so that an account's
	// next event neither reads the store nor decodes JSON. An entry in it is
	// the latest there is (what the pending batch or the store holds). It is
	// forgotten at every rebalance (the store may have changed meanwhile:
	// recovery from the table topic) and whole when it reaches its bound (a
	// bound, not an LRU: cheap, and a catch-up refills it at once).
	cache map[string]*cachedEntry
	// totals are the partition's currency counters (see partitionTotals);
	// nil until the store was scanned after the last rebalance.
	totals map[string]*counterState
	// storeEmpty is set when the partition's store held no entry at the
	// scan of totals, and cleared whenever the cache is emptied: while it
	// is set, every entry the store holds was written since the scan, so it
	// is in the cache (entries written to the store are cached when they
	// are queued), and an account found neither there nor in the batches has
	// no entry: a fresh version's first event of each account skips the
	// store read.
	storeEmpty bool
	// gen numbers the pending batches: a counter whose gen differs is not
	// yet in the pending batch's list of changed counters.
	gen uint64
}

// cachedEntry is a cached account entry, and where the pending batch holds
// it: an account's next event updates it in place and finds its batch entry
// without a map lookup (one cache lookup per event instead of three map
// operations).
type cachedEntry struct {
	a Account
	// gen and idx: the pending batch of generation gen holds the account at
	// entries[idx] (gen 0: none yet; generations start at 1).
	gen uint64
	idx int32
}

// pendingPart is one partition's share of a batch.
type pendingPart struct {
	index   map[string]int32 // key -> its position in entries
	entries []pendingEntry   // each account's last entry of the batch
	owners  []*kgo.Record    // owner-index records
	changed []*counterState  // counters changed (copied into totals at the swap)
	totals  []CurrencyTotal  // the counters to send, as they were at the swap
	seq     int64            // the offset of the last event written
	dones   []func(error)
	// letters are dead letters of the batch's events; each holds one of
	// dones back (letterDones of them: not events, not counted as written).
	letters     []*kgo.Record
	letterDones int
	// err fails the batch (and so every later one): an event of it could
	// not be folded for a reason that is not the event's (failFold).
	err error
}

type pendingEntry struct {
	key   string
	a     Account
	store bool   // written to the store (not a stale event's re-send only)
	raw   []byte // encoded at flush time
}

// newPendingPart returns an empty batch sized like the last one (prev, may
// be nil): a catch-up's batches are alike, and growing them event by event
// was a good part of the handlers' allocations.
func newPendingPart(prev *pendingPart) *pendingPart {
	if prev == nil {
		return &pendingPart{index: map[string]int32{}}
	}
	return &pendingPart{index: make(map[string]int32, len(prev.entries)),
		entries: make([]pendingEntry, 0, len(prev.entries)), dones: make([]func(error), 0, len(prev.dones))}
}

func newTableWriter(cl *kgo.Client, stores *storeSet, n Names, parts int32, written, forwarded *atomic.Int64) *tableWriter {
	w := &tableWriter{written: written, forwarded: forwarded,
		cl: cl, stores: stores, table: TableOf(n.AccountsGroup()),
		byOwner: string(n.ByOwnerTopic()), byCurr: string(n.ByCurrencyTopic()),
		maxBatch: 5000, interval: 5 * time.Millisecond, kick: make(chan struct{}, 1),
	}
	for p := range parts {
		w.parts = append(w.parts, &partWriter{p: p, pending: newPendingPart(nil), cache: map[string]*cachedEntry{}, gen: 1})
	}
	w.space = sync.NewCond(&w.mu)
	return w
}

// cacheEntries bounds the writer's caches of entries (all partitions).
const cacheEntries = 100_000

// part returns partition p's state; an error for a partition the events
// topic did not have when the projector started.
func (w *tableWriter) part(p int32) (*partWriter, error) {
	if p < 0 || int(p) >= len(w.parts) {
		return nil, fmt.Errorf("projection: partition %d of %d", p, len(w.parts))
	}
	return w.parts[p], nil
}

// heldLocked returns the entry of key from the cache (with its cache
// entry), the pending batch or the batch being flushed (ce nil), if one has
// it. Called with pw.mu held.
func (pw *partWriter) heldLocked(key string) (a Account, ce *cachedEntry, ok bool) {
	if ce := pw.cache[key]; ce != nil {
		return ce.a, ce, true
	}
	for _, b := range [2]*pendingPart{pw.pending, pw.flushing} {
		if b != nil {
			if i, ok := b.index[key]; ok {
				return b.entries[i].a, nil, true
			}
		}
	}
	return Account{}, nil, false
}

// readLocked reads key's entry from the partition's store (ok false: none).
// Called with pw.mu held.
func (w *tableWriter) readLocked(pw *partWriter, key string) (a Account, ok bool, err error) {
	st := w.stores.get(w.table, pw.p)
	if st == nil {
		return a, false, fmt.Errorf("projection: no store for %s/%d", w.table, pw.p)
	}
	raw, err := st.Get(key)
	if err != nil {
		return a, false, fmt.Errorf("projection: read %s/%d: %w", w.table, pw.p, err)
	}
	if raw == nil {
		return a, false, nil
	}
	if err := unmarshalAccount(raw, &a); err != nil {
		return a, false, fmt.Errorf("projection: read %s/%d: key %q: %w", w.table, pw.p, key, err)
	}
	return a, true, nil
}

// cacheLocked caches a as key's entry and returns its cache entry.
func (w *tableWriter) cacheLocked(pw *partWriter, key string, a Account) *cachedEntry {
	ce := pw.cache[key]
	if ce == nil {
		if len(pw.cache) >= cacheEntries/len(w.parts)+1 {
			pw.cache, pw.storeEmpty = map[string]*cachedEntry{}, false
		}
		ce = &cachedEntry{}
		pw.cache[key] = ce
	}
	ce.a = a
	return ce
}

// forget empties the caches and the counters (at a rebalance).
func (w *tableWriter) forget() {
	for _, pw := range w.parts {
		pw.mu.Lock()
		pw.cache, pw.totals, pw.storeEmpty = map[string]*cachedEntry{}, nil, false
		pw.mu.Unlock()
	}
}

// partitionOf is the partition of key in every topic of the version: Kafka's
// murmur2, as goka's hasher and sarama's partitioner compute it.
func (w *tableWriter) partitionOf(key string) int32 {
	return int32(murmur2String(key) % uint32(len(w.parts)))
}

// waitForSpace bounds the memory held by pending batches: a handler waits
// while 8 batches' worth of events are pending.
func (w *tableWriter) waitForSpace() error {
	if w.n.Load() < int64(8*w.maxBatch) {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.n.Load() >= int64(8*w.maxBatch) && !w.closed {
		w.space.Wait()
	}
	if w.closed {
		return errors.New("projection: writer closed")
	}
	return nil
}

// addLocked queues one event's output in pw's pending batch: the entry a
// for the table (written to the store too when store is set; a stale
// event's re-send is not), the owner-index record (may be nil), the
// currency counters c it changed or re-sends (may be nil), and the event's
// deferred commit; ce is key's cache entry (nil if it has none). Called
// with pw.mu held.
func (w *tableWriter) addLocked(pw *partWriter, key string, ce *cachedEntry, a Account, store bool, ownerRec *kgo.Record, c *counterState, offset int64, done func(error)) {
	if store {
		if ce != nil {
			ce.a = a
		} else {
			ce = w.cacheLocked(pw, key, a)
		}
	}
	pp := pw.pending
	var i int32
	if ce != nil && ce.gen == pw.gen {
		i = ce.idx
	} else {
		var ok bool
		if i, ok = pp.index[key]; !ok {
			i = int32(len(pp.entries))
			pp.index[key] = i
			pp.entries = append(pp.entries, pendingEntry{key: key})
		}
		if ce != nil {
			ce.gen, ce.idx = pw.gen, i
		}
	}
	e := &pp.entries[i]
	e.a, e.store = a, e.store || store
	if ownerRec != nil {
		pp.owners = append(pp.owners, ownerRec)
	}
	if c != nil && c.gen != pw.gen {
		c.gen = pw.gen
		pp.changed = append(pp.changed, c)
	}
	pp.seq = offset
	pp.dones = append(pp.dones, done)
	w.added()
}

// added counts a pending event and wakes the flusher at a full batch.
func (w *tableWriter) added() {
	if w.n.Add(1) == int64(w.maxBatch) {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// failLocked queues the commit of an event that could not be folded for a
// reason that is not the event's (a store or a key that could not be read),
// and fails its batch with err: neither it nor any event after it is
// committed, and the group stops (the events come again). Called with pw.mu
// held.
func (w *tableWriter) failLocked(pw *partWriter, done func(error), err error) {
	if pw.pending.err == nil {
		pw.pending.err = err
	}
	pw.pending.dones = append(pw.pending.dones, done)
	w.added()
}

// deadLetter queues a dead letter r of an event of partition p, and done, a
// deferred commit of that event: like its table entry, the event is
// committed only once the dead letter was acknowledged, and no event after
// it before (TestCommitNeverOvertakesADeadLetter).
func (w *tableWriter) deadLetter(p int32, r *kgo.Record, done func(error)) error {
	return w.queue(p, r, done)
}

// pass queues the commit of an event that writes nothing behind the pending
// events of its partition.
func (w *tableWriter) pass(p int32, done func(error)) error {
	return w.queue(p, nil, done)
}

// queue queues done, the deferred commit of an event of partition p that
// writes no table entry, behind the pending events of p, with its dead
// letter r (nil: none).
func (w *tableWriter) queue(p int32, r *kgo.Record, done func(error)) error {
	pw, err := w.part(p)
	if err != nil {
		return err
	}
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return errors.New("projection: writer closed")
	}
	pw.mu.Lock()
	if r != nil {
		pw.pending.letters = append(pw.pending.letters, r)
		pw.pending.letterDones++
	}
	pw.pending.dones = append(pw.pending.dones, done)
	pw.mu.Unlock()
	w.added()
	return nil
}

// run flushes until stop is closed, then flushes once more and fails what
// could not be written.
func (w *tableWriter) run(stop <-chan struct{}) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			w.flush()
			w.mu.Lock()
			w.closed = true
			w.space.Broadcast()
			w.mu.Unlock()
			left := w.take()
			finish(left, errors.New("projection: writer stopped"))
			return
		case <-t.C:
		case <-w.kick:
		}
		w.flush()
	}
}

// take swaps every partition's pending batch for an empty one and returns
// the batches (nil entries for partitions without events). The counters
// each batch changed are copied as they are now: they then include every
// event of the batch, and seq is the batch's last written event.
func (w *tableWriter) take() []*pendingPart {
	batch := make([]*pendingPart, len(w.parts))
	var events int64
	for i, pw := range w.parts {
		pw.mu.Lock()
		pp := pw.pending
		if len(pp.dones) > 0 {
			for _, c := range pp.changed {
				t := c.CurrencyTotal
				t.Seq = pp.seq
				pp.totals = append(pp.totals, t)
			}
			pp.changed = nil
			batch[i], events = pp, events+int64(len(pp.dones))
			pw.flushing, pw.pending = pp, newPendingPart(pp)
			pw.gen++
		}
		pw.mu.Unlock()
	}
	w.n.Add(-events)
	w.mu.Lock()
	w.space.Broadcast()
	w.mu.Unlock()
	return batch
}

func finish(batch []*pendingPart, err error) {
	for _, pp := range batch {
		if pp != nil {
			for _, d := range pp.dones {
				d(err)
			}
		}
	}
}

// flush writes the pending batches (see tableWriter).
func (w *tableWriter) flush() {
	if w.n.Load() == 0 {
		return
	}
	batch := w.take()
	err := w.failed // read and written by the flusher only
	events := 0
	for p, pp := range batch {
		if pp == nil {
			continue
		}
		events += len(pp.dones) - pp.letterDones
		if err == nil {
			err = pp.err
		}
		if err != nil || len(pp.entries) == 0 {
			continue // commits only, or failed already
		}
		err = w.store(int32(p), pp)
	}
	for _, pw := range w.parts {
		pw.mu.Lock()
		pw.flushing = nil
		pw.mu.Unlock()
	}
	var fwd int64
	if err == nil {
		fwd, err = w.produce(batch)
	}
	if err == nil {
		w.written.Add(int64(events))
		w.forwarded.Add(fwd)
	}
	w.failed = err
	finish(batch, err)
}

// store encodes a partition's entries (into one buffer) and writes those to
// be stored in one Pebble batch.
func (w *tableWriter) store(p int32, pp *pendingPart) error {
	size := 0
	for i := range pp.entries {
		size += accountJSONSize(&pp.entries[i].a)
	}
	buf := make([]byte, 0, size)
	for i := range pp.entries {
		e := &pp.entries[i]
		start := len(buf)
		var err error
		if buf, err = appendAccount(buf, &e.a); err != nil {
			return err
		}
		e.raw = buf[start:len(buf):len(buf)]
	}
	st := w.stores.get(w.table, p)
	if st == nil {
		return fmt.Errorf("projection: no store for %s/%d", w.table, p)
	}
	return st.setEntries(pp.entries)
}

// produce sends a batch's records, waits for them and stores each table
// partition's last offset. It returns the number of records sent to the
// intermediate topics.
func (w *tableWriter) produce(batch []*pendingPart) (int64, error) {
	var (
		wg    sync.WaitGroup
		emu   sync.Mutex
		first error
		fwd   int64
		last  = make([]int64, len(w.parts))
	)
	cb := func(r *kgo.Record, err error) {
		emu.Lock()
		if err != nil && first == nil {
			first = fmt.Errorf("projection: produce to %s: %w", r.Topic, err)
		}
		if err == nil && r.Topic == w.table && r.Offset+1 > last[r.Partition] {
			last[r.Partition] = r.Offset + 1
		}
		emu.Unlock()
		wg.Done()
	}
	n := 0
	for _, pp := range batch {
		if pp != nil {
			n += len(pp.entries) + len(pp.totals)
		}
	}
	recs := make([]kgo.Record, 0, n) // one allocation for the batch's records
	send := func(r *kgo.Record) {
		wg.Add(1)
		w.cl.Produce(context.Background(), r, cb)
	}
	for p, pp := range batch {
		if pp == nil {
			continue
		}
		for i := range pp.entries {
			e := &pp.entries[i]
			recs = append(recs, kgo.Record{Topic: w.table, Partition: int32(p), Key: []byte(e.key), Value: e.raw})
			send(&recs[len(recs)-1])
		}
		for _, r := range pp.owners {
			fwd++
			send(r)
		}
		for _, r := range pp.letters {
			send(r)
		}
		for i := range pp.totals {
			t := &pp.totals[i]
			k := TotalKey(t.Currency, int32(p))
			v, err := encodeTotal(t)
			if err != nil {
				wg.Wait()
				return 0, err
			}
			fwd++
			recs = append(recs, kgo.Record{Topic: w.byCurr, Partition: w.partitionOf(k), Key: []byte(k), Value: v})
			send(&recs[len(recs)-1])
		}
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	// goka reads the table topic from this offset on when it recovers a
	// partition: one store write per partition and batch instead of one per
	// record. (It stores the offset of the last record, as goka does.)
	for p, next := range last {
		if next == 0 {
			continue
		}
		st := w.stores.get(w.table, int32(p))
		if st == nil {
			return 0, fmt.Errorf("projection: no store for %s/%d", w.table, p)
		}
		if err := st.SetOffset(next - 1); err != nil {
			return 0, err
		}
	}
	return fwd, nil
}
