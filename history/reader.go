package history

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// ErrIncomplete: the committed events of the aggregate in the topic do not
// run from the version asked for without a gap or a duplicate (records
// deleted by retention or DeleteRecords, or a forged record that copies an
// event). The reader says so rather than answer a shorter or different
// history.
var ErrIncomplete = errors.New("history: the aggregate's events are incomplete in the events topic")

// ReaderConfig configures a Reader.
type ReaderConfig struct {
	// Index to look offsets up in. Required.
	Index *Index
	// Client issues the fetches (any client of the cluster; the reader
	// never consumes with it). Required.
	Client *kgo.Client
	// Registry decodes the event envelopes and folds states. Required.
	Registry *topology.Registry
	// Topic is the events topic. Default "events".
	Topic string
	// Concurrency is the number of fetches in flight for one History
	// call reading scattered offsets. Default 8.
	Concurrency int
	// FetchClients are further clients of the same cluster the scattered
	// fetches are spread over, with Client: Kafka (and the embedded
	// broker) serves one request per connection at a time, and a client
	// has one fetch connection per broker, so fetches in flight on one
	// client wait for each other. Optional; the reader never closes them.
	FetchClients []*kgo.Client
	// Open, when set, is the registry that decodes what the endpoints show
	// and StateAt folds: one that opens personal fields
	// (Registry.WithKeyring), so they read as the processor's state has
	// them (plaintext, or shred.Erased after an erasure). Registry itself
	// only checks envelopes (it needs no keys, so a key not loaded yet can
	// never drop an event from a history). Nil: Registry (sealed fields
	// are shown as their sealed text).
	Open *topology.Registry
	// MaxTail bounds the unindexed tail (offsets past the index's
	// checkpoint) one HTTP request may scan: beyond it the endpoints answer
	// 503 with Retry-After while the indexer catches up, so that requests
	// made while an index is built (a new worker, a reindex) cannot each
	// scan most of a partition. History, StateAt and the schema-change
	// rebuild are not bounded (they stay exact at any lag). Default
	// 100000; negative: no bound.
	MaxTail int64
}

// maxTailKey carries an HTTP request's bound on the tail scan.
type maxTailKey struct{}

// Reader answers History and StateAt from an Index and the events topic.
// It is safe for concurrent use.
type Reader struct {
	cfg ReaderConfig

	mu    sync.Mutex
	parts int32 // partition count of the topic, once known
	desc  map[int32]logread.Partition
}

// NewReader validates cfg.
func NewReader(cfg ReaderConfig) (*Reader, error) {
	var errs []error
	if cfg.Index == nil {
		errs = append(errs, errors.New("history: ReaderConfig.Index is required"))
	}
	if cfg.Client == nil {
		errs = append(errs, errors.New("history: ReaderConfig.Client is required"))
	}
	if cfg.Registry == nil {
		errs = append(errs, errors.New("history: ReaderConfig.Registry is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Topic == "" {
		cfg.Topic = "events"
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Open == nil {
		cfg.Open = cfg.Registry
	}
	if cfg.MaxTail == 0 {
		cfg.MaxTail = 100_000
	}
	return &Reader{cfg: cfg, desc: map[int32]logread.Partition{}}, nil
}

// Index returns the index the reader looks offsets up in.
func (r *Reader) Index() *Index { return r.cfg.Index }

// Event is one event of an aggregate's history, as committed in Kafka.
type Event struct {
	wire.Event
	Partition int32
	Offset    int64
	// Value is the record's value, as written (for Registry.DecodeEvents
	// and Registry.ReplayState).
	Value []byte
}

// Time is when the processor accepted the command that caused the event.
func (e *Event) Time() time.Time { return time.UnixMilli(e.TimestampMillis).UTC() }

// partitionOf returns the events partition of aggregate id: the partition
// of its commands (murmur2, as the processor routes them), which is where
// the processor writes its events.
func (r *Reader) partitionOf(ctx context.Context, id string) (int32, error) {
	r.mu.Lock()
	n := r.parts
	r.mu.Unlock()
	if n == 0 {
		_, parts, err := topicMeta(ctx, r.cfg.Client, r.cfg.Topic)
		if err != nil {
			return 0, err
		}
		n = parts
		r.mu.Lock()
		r.parts = n
		r.mu.Unlock()
	}
	return topology.PartitionFor([]byte(id), n), nil
}

func (r *Reader) describe(ctx context.Context, part int32, fresh bool) (logread.Partition, error) {
	r.mu.Lock()
	d, ok := r.desc[part]
	r.mu.Unlock()
	if ok && !fresh {
		return d, nil
	}
	d, err := logread.Describe(ctx, r.cfg.Client, r.cfg.Topic, part)
	if err != nil {
		return d, err
	}
	r.mu.Lock()
	r.desc[part] = d
	r.mu.Unlock()
	return d, nil
}

// History returns the committed events of one aggregate with versions in
// [from, to] (from <= 1: from its first; to <= 0: up to its latest), in
// version order. Versions below the index's checkpoint are read at their
// indexed offsets (Concurrency fetches in flight); the part of the
// partition the index has not read yet (from its checkpoint to the last
// stable offset) is scanned, so the answer is complete even while the
// indexer lags: it is exactly what a read_committed scan of the partition
// would find. Records whose envelope is not the aggregate's event at the
// version the index says (forged headers) are left out.
func (r *Reader) History(ctx context.Context, aggType, id string, from, to int64) ([]Event, error) {
	if from < 1 {
		from = 1
	}
	if to > 0 && to < from {
		return nil, nil
	}
	part, err := r.partitionOf(ctx, id)
	if err != nil {
		return nil, err
	}
	if _, err := r.sameTopic(ctx, part, false); err != nil {
		return nil, err
	}
	cp, ok, err := r.cfg.Index.Checkpoint(part)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s[%d]", ErrNotIndexed, r.cfg.Topic, part)
	}
	ptrs, err := r.cfg.Index.Lookup(aggType, id, from, to)
	if err != nil {
		return nil, err
	}
	want := make([]int64, 0, len(ptrs))
	claimed := make(map[int64]int64, len(ptrs)) // offset -> the version its headers claim
	for _, p := range ptrs {
		if p.Partition == part && p.Offset < cp {
			want = append(want, p.Offset)
			claimed[p.Offset] = p.Version
		}
	}
	recs, err := r.fetchOffsets(ctx, part, want)
	if err != nil {
		return nil, err
	}
	var out []Event
	// The tail gets the same test as an indexed record: key, headers and
	// envelope must all name this aggregate and the same version (the
	// index holds only records with such headers).
	keep := func(rec *kgo.Record) error {
		if string(rec.Key) != id {
			return nil
		}
		hType, hVersion, ok := eventHeaders(rec)
		if !ok || hType != aggType {
			return nil
		}
		ev, ok := r.decode(rec, aggType, id)
		if ok && ev.Version == hVersion && ev.Version >= from && (to <= 0 || ev.Version <= to) {
			out = append(out, ev)
		}
		return nil
	}
	for _, o := range want {
		rec := recs[o]
		if rec == nil || string(rec.Key) != id {
			continue
		}
		// The envelope must say what the headers claimed: a record whose
		// headers lie about its version is not this aggregate's event.
		if ev, ok := r.decode(rec, aggType, id); ok && ev.Version == claimed[o] {
			out = append(out, ev)
		}
	}
	// The tail the index has not read yet.
	if to <= 0 || len(out) == 0 || out[len(out)-1].Version < to {
		if err := r.scanTail(ctx, part, cp, keep); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Version != out[j].Version {
			return out[i].Version < out[j].Version
		}
		return out[i].Offset < out[j].Offset
	})
	// Versions run from, from+1, ... : an aggregate's first event is
	// version 1 and each next one is one more, so anything else means a
	// record is missing (deleted) or doubled (forged).
	for i := range out {
		if want := from + int64(i); out[i].Version != want {
			return nil, fmt.Errorf("%w: %s %q: version %d where %d was expected (offset %d of partition %d)",
				ErrIncomplete, aggType, id, out[i].Version, want, out[i].Offset, part)
		}
	}
	return out, nil
}

// sameTopic returns the partition's description and checks that the index
// was built from this incarnation of the topic: the offsets of a deleted
// and recreated topic point at other records, and its checkpoint past the
// new topic's end would hide the new events. A mismatch is ErrNotIndexed
// (503) until the indexer has noticed it and rebuilt the index. A cached
// description is checked once more with a fresh one before it is believed
// to differ.
func (r *Reader) sameTopic(ctx context.Context, part int32, fresh bool) (logread.Partition, error) {
	want, err := r.cfg.Index.TopicID()
	if err != nil {
		return logread.Partition{}, err
	}
	d, err := r.describe(ctx, part, fresh)
	if err != nil || want == ([16]byte{}) {
		return d, err // an index that recorded no topic id: nothing to compare
	}
	if d.TopicID != want && d.TopicID != ([16]byte{}) && !fresh {
		if d, err = r.describe(ctx, part, true); err != nil {
			return d, err
		}
	}
	if d.TopicID != want && d.TopicID != ([16]byte{}) {
		return d, fmt.Errorf("%w: the index of %s was built from another incarnation of the topic (deleted and created again?); it is being rebuilt", ErrNotIndexed, r.cfg.Topic)
	}
	return d, nil
}

// decode reads rec's envelope and reports whether it is an event of
// (aggType, id).
func (r *Reader) decode(rec *kgo.Record, aggType, id string) (Event, bool) {
	env, _, err := r.cfg.Registry.DecodeEvents(rec.Value)
	if err != nil || env.AggregateType != aggType || env.AggregateID != id {
		return Event{}, false
	}
	return Event{Event: env, Partition: rec.Partition, Offset: rec.Offset, Value: rec.Value}, true
}

// scanTail hands fn every committed record of part from cp to the last
// stable offset (read when the first fetch answers).
func (r *Reader) scanTail(ctx context.Context, part int32, cp int64, fn func(*kgo.Record) error) error {
	d, err := r.describe(ctx, part, false)
	if err != nil {
		return err
	}
	f, err := logread.FetchAt(ctx, r.cfg.Client, r.cfg.Topic, part, d, cp, 1<<20)
	if err != nil {
		// A recreated topic (the index checked against a stale
		// description) is told apart from a failed fetch.
		if _, terr := r.sameTopic(ctx, part, true); terr != nil {
			return terr
		}
		if errors.Is(err, logread.ErrOffsetOutOfRange) {
			// The checkpoint is past the log's end (a truncated log):
			// the indexer rebuilds the index.
			return fmt.Errorf("%w: the index of %s[%d] is past the end of the log; it is being rebuilt: %w", ErrNotIndexed, r.cfg.Topic, part, err)
		}
		return fmt.Errorf("history: %w", err)
	}
	if limit, ok := ctx.Value(maxTailKey{}).(int64); ok && limit >= 0 && f.LastStable-cp > limit {
		return fmt.Errorf("%w: the index of %s[%d] is %d offsets behind (still being built?)", ErrNotIndexed, r.cfg.Topic, part, f.LastStable-cp)
	}
	for _, rec := range f.Records {
		if rec.Offset < f.LastStable {
			_ = fn(rec)
		}
	}
	if f.Next >= f.LastStable {
		return nil
	}
	_, err = logread.Read(ctx, r.cfg.Client, r.cfg.Topic, part, f.Next, f.LastStable, logread.Options{}, fn)
	return err
}

// fetchOffsets returns the records at offsets (ascending) of part. The
// offsets are cut into Concurrency runs fetched at the same time; one fetch
// returns at least the whole batch holding its offset, so every offset of
// the run that batch also holds costs nothing more.
func (r *Reader) fetchOffsets(ctx context.Context, part int32, offsets []int64) (map[int64]*kgo.Record, error) {
	out := make(map[int64]*kgo.Record, len(offsets))
	if len(offsets) == 0 {
		return out, nil
	}
	d, err := r.describe(ctx, part, false)
	if err != nil {
		return nil, err
	}
	conc := min(r.cfg.Concurrency, len(offsets))
	clients := append([]*kgo.Client{r.cfg.Client}, r.cfg.FetchClients...)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, conc)
	for w := range conc {
		lo, hi := w*len(offsets)/conc, (w+1)*len(offsets)/conc
		run := offsets[lo:hi]
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = r.fetchRun(ctx, clients[w%len(clients)], part, d, run, func(rec *kgo.Record) {
				mu.Lock()
				out[rec.Offset] = rec
				mu.Unlock()
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// fetchRun fetches the offsets of one run in order, one batch per fetch,
// decoding only the records the run wants.
func (r *Reader) fetchRun(ctx context.Context, cl *kgo.Client, part int32, d logread.Partition, run []int64, found func(*kgo.Record)) error {
	tries := 0
	for i := 0; i < len(run); {
		rest := run[i:]
		want := func(o int64) bool {
			_, ok := slices.BinarySearch(rest, o)
			return ok
		}
		wantAfter := func(o, last int64) bool {
			j, _ := slices.BinarySearch(rest, o+1)
			return j < len(rest) && rest[j] <= last
		}
		recs, next, err := fetchWanted(ctx, cl, r.cfg.Topic, part, d, run[i], want, wantAfter)
		if errors.Is(err, logread.ErrOffsetOutOfRange) {
			// The indexed record is no longer in the log (below its
			// start: deleted by retention or DeleteRecords), unless the
			// topic itself is another one now.
			if _, terr := r.sameTopic(ctx, part, true); terr != nil {
				return terr
			}
			return fmt.Errorf("%w: %w", ErrIncomplete, err)
		}
		if err != nil {
			if ctx.Err() != nil || tries >= 5 {
				return err
			}
			tries++
			select {
			case <-ctx.Done():
				return fmt.Errorf("history: %w", ctx.Err())
			case <-time.After(time.Duration(tries) * 50 * time.Millisecond):
			}
			if d, err = r.describe(ctx, part, true); err != nil && tries >= 5 {
				return err
			}
			continue
		}
		tries = 0
		if next <= run[i] {
			return fmt.Errorf("history: %s[%d] offset %d is not readable", r.cfg.Topic, part, run[i])
		}
		for _, rec := range recs {
			found(rec)
		}
		for i < len(run) && run[i] < next {
			i++
		}
	}
	return nil
}
