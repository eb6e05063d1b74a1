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
// records and the latest currency counters of each partition (one record per
// currency and partition per batch, not per event) with one franz-go client,
// waits for every acknowledgement, stores each table partition's last
// offset once, and only then releases the batch's commits.
//
// The guarantees of goka's own path hold: the store is written before the
// produces (as goka does), an event's offset is committed only after all of
// its records were acknowledged, a failed produce fails the group (the
// events since the last commit come again; the stale path re-sends the held
// entry), and a table record's partition is its event's partition.
type tableWriter struct {
	cl       *kgo.Client
	stores   *storeSet
	table    string // the accounts table topic
	byOwner  string
	byCurr   string
	parts    int32 // partitions of every topic of the version
	maxBatch int   // events per flush before the flusher is woken early
	interval time.Duration

	written, forwarded *atomic.Int64

	mu      sync.Mutex
	space   *sync.Cond // signalled when a flush took the pending batch
	pending map[int32]*pendingPart
	// flushing is the batch being written to the stores (readers look
	// there after pending).
	flushing map[int32]*pendingPart
	// cache holds the entries last written or read, by partition and key,
	// so that an account's next event neither reads the store nor decodes
	// JSON. It is what the store holds (or the pending batch, which is
	// written first), forgotten at every rebalance (a partition's store may
	// have changed meanwhile: recovery from the table topic) and whole when
	// it reaches cacheEntries (a bound, not an LRU: cheap, and a catch-up
	// refills it at once).
	cache  map[int32]map[string]Account
	cached int
	n      int // events pending
	kick   chan struct{}
	closed bool
}

// pendingPart is one partition's share of a batch.
type pendingPart struct {
	entries map[string]*pendingEntry // each account's last entry of the batch
	owners  []*kgo.Record            // owner-index records
	totals  map[string]CurrencyTotal // each currency's last counters
	dones   []func(error)
}

type pendingEntry struct {
	a     Account
	store bool   // written to the store (not a stale event's re-send only)
	raw   []byte // encoded at flush time
}

func newTableWriter(cl *kgo.Client, stores *storeSet, n Names, parts int32, written, forwarded *atomic.Int64) *tableWriter {
	w := &tableWriter{written: written, forwarded: forwarded,
		cl: cl, stores: stores, table: TableOf(n.AccountsGroup()),
		byOwner: string(n.ByOwnerTopic()), byCurr: string(n.ByCurrencyTopic()), parts: parts,
		maxBatch: 5000, interval: 5 * time.Millisecond,
		pending: map[int32]*pendingPart{}, kick: make(chan struct{}, 1), cache: map[int32]map[string]Account{},
	}
	w.space = sync.NewCond(&w.mu)
	return w
}

// cacheEntries bounds the writer's cache of entries.
const cacheEntries = 100_000

// held returns the entry of key in partition p from the pending batch (the
// store does not have it yet) or the cache, if either has it.
func (w *tableWriter) held(p int32, key string) (Account, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range []map[int32]*pendingPart{w.pending, w.flushing} {
		if pp := b[p]; pp != nil {
			if e, ok := pp.entries[key]; ok {
				return e.a, true
			}
		}
	}
	a, ok := w.cache[p][key]
	return a, ok
}

// remember caches the entry a of key in partition p, read from the store.
func (w *tableWriter) remember(p int32, key string, a Account) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cacheLocked(p, key, a)
}

func (w *tableWriter) cacheLocked(p int32, key string, a Account) {
	if w.cached >= cacheEntries {
		w.cache, w.cached = map[int32]map[string]Account{}, 0
	}
	m := w.cache[p]
	if m == nil {
		m = map[string]Account{}
		w.cache[p] = m
	}
	if _, ok := m[key]; !ok {
		w.cached++
	}
	m[key] = a
}

// forget empties the cache (at a rebalance).
func (w *tableWriter) forget() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cache, w.cached = map[int32]map[string]Account{}, 0
}

// partitionOf is the partition of key in every topic of the version: Kafka's
// murmur2, as goka's hasher and sarama's partitioner compute it.
func (w *tableWriter) partitionOf(key string) int32 {
	h := Murmur2()
	_, _ = h.Write([]byte(key))
	return int32(h.Sum32() % uint32(w.parts))
}

// write is one event's output: the entry a for the table (written to the
// store too when store is set; a stale event re-sends the held entry
// without writing it), the owner-index entry under ownerName when it is set, the
// currency counters tot (may be nil), and the event's deferred commit.
func (w *tableWriter) write(p int32, key string, a Account, store bool, ownerName string, tot *CurrencyTotal, done func(error)) error {
	var ownerRec *kgo.Record
	if ownerName != "" {
		k := OwnerKey(ownerName, a.ID)
		v, err := encodeAccount(&Account{ID: a.ID, Owner: ownerName, Version: a.Version})
		if err != nil {
			return err
		}
		ownerRec = &kgo.Record{Topic: w.byOwner, Partition: w.partitionOf(k), Key: []byte(k), Value: v}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.n >= 8*w.maxBatch && !w.closed {
		w.space.Wait() // bounds the memory held by pending batches
	}
	if w.closed {
		return errors.New("projection: writer closed")
	}
	pp := w.part(p)
	e := pp.entries[key]
	if e == nil {
		e = &pendingEntry{}
		pp.entries[key] = e
	}
	e.a, e.store = a, e.store || store
	if store {
		w.cacheLocked(p, key, a)
	}
	if ownerRec != nil {
		pp.owners = append(pp.owners, ownerRec)
	}
	if tot != nil {
		pp.totals[tot.Currency] = *tot
	}
	pp.dones = append(pp.dones, done)
	w.n++
	if w.n >= w.maxBatch {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// pass queues the commit of an event that writes nothing behind the pending
// events of its partition.
func (w *tableWriter) pass(p int32, done func(error)) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("projection: writer closed")
	}
	w.part(p).dones = append(w.part(p).dones, done)
	w.n++
	return nil
}

func (w *tableWriter) part(p int32) *pendingPart {
	pp := w.pending[p]
	if pp == nil {
		pp = &pendingPart{entries: map[string]*pendingEntry{}, totals: map[string]CurrencyTotal{}}
		w.pending[p] = pp
	}
	return pp
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
			left := w.pending
			w.pending = map[int32]*pendingPart{}
			w.n = 0
			w.space.Broadcast()
			w.mu.Unlock()
			finish(left, errors.New("projection: writer stopped"))
			return
		case <-t.C:
		case <-w.kick:
		}
		w.flush()
	}
}

func finish(batch map[int32]*pendingPart, err error) {
	for _, pp := range batch {
		for _, d := range pp.dones {
			d(err)
		}
	}
}

// flush writes the pending batch (see tableWriter).
func (w *tableWriter) flush() {
	w.mu.Lock()
	if w.n == 0 {
		w.mu.Unlock()
		return
	}
	batch, events := w.pending, w.n
	// Readers find the batch in flushing until the stores have it.
	w.flushing, w.pending, w.n = batch, map[int32]*pendingPart{}, 0
	w.space.Broadcast()
	w.mu.Unlock()
	var err error
	for p, pp := range batch {
		if len(pp.entries) == 0 {
			continue // commits only
		}
		for _, e := range pp.entries {
			if e.raw, err = encodeAccount(&e.a); err != nil {
				break
			}
		}
		st := w.stores.get(w.table, p)
		if st == nil {
			err = fmt.Errorf("projection: no store for %s/%d", w.table, p)
		}
		if err == nil {
			err = st.setEntries(pp.entries)
		}
		if err != nil {
			break
		}
	}
	w.mu.Lock()
	w.flushing = nil
	w.mu.Unlock()

	var fwd int64
	if err == nil {
		fwd, err = w.produce(batch)
	}
	if err == nil {
		w.written.Add(int64(events))
		w.forwarded.Add(fwd)
	}
	finish(batch, err)
}

// produce sends a batch's records, waits for them and stores each table
// partition's last offset. It returns the number of records sent to the
// intermediate topics.
func (w *tableWriter) produce(batch map[int32]*pendingPart) (int64, error) {
	var (
		wg    sync.WaitGroup
		emu   sync.Mutex
		first error
		fwd   int64
		last  = map[int32]int64{}
	)
	cb := func(r *kgo.Record, err error) {
		emu.Lock()
		if err != nil && first == nil {
			first = fmt.Errorf("projection: produce to %s: %w", r.Topic, err)
		}
		if err == nil && r.Topic == w.table && r.Offset > last[r.Partition] {
			last[r.Partition] = r.Offset
		}
		emu.Unlock()
		wg.Done()
	}
	send := func(r *kgo.Record) {
		wg.Add(1)
		w.cl.Produce(context.Background(), r, cb)
	}
	for p, pp := range batch {
		for k, e := range pp.entries {
			send(&kgo.Record{Topic: w.table, Partition: p, Key: []byte(k), Value: e.raw})
		}
		for _, r := range pp.owners {
			fwd++
			send(r)
		}
		for _, t := range pp.totals {
			k := TotalKey(t.Currency, p)
			v, err := jsonCodec[CurrencyTotal]{}.Encode(&t)
			if err != nil {
				return 0, err
			}
			fwd++
			send(&kgo.Record{Topic: w.byCurr, Partition: w.partitionOf(k), Key: []byte(k), Value: v})
		}
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	// goka reads the table topic from this offset on when it recovers a
	// partition: one store write per partition and batch instead of one per
	// record.
	for p, off := range last {
		st := w.stores.get(w.table, p)
		if st == nil {
			return 0, fmt.Errorf("projection: no store for %s/%d", w.table, p)
		}
		if err := st.SetOffset(off); err != nil {
			return 0, err
		}
	}
	return fwd, nil
}
