package history

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"strconv"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/wire"
)

// Errors of this package start with "history: ".
var (
	// ErrClosed is returned by every operation on a closed index.
	ErrClosed = errors.New("history: index closed")
	// ErrNotIndexed is returned by a reader for a partition the index does
	// not cover (it never recorded a checkpoint for it).
	ErrNotIndexed = errors.New("history: partition not indexed")
)

// Pointer is where one event of an aggregate is in the events topic.
type Pointer struct {
	Version   int64
	Partition int32
	Offset    int64
	// TimestampMillis is the record's timestamp (produce time).
	TimestampMillis int64
}

// Index maps (aggregate type, aggregate id, version) to the partition and
// offset of the event in the events topic, with, in the same Pebble batch,
// the next offset to index of every partition it covers. It is derived from
// the events topic only: Apply is idempotent, so re-reading any part of the
// topic (after a crash between a Pebble write and the next read) changes
// nothing, and the index can always be thrown away and rebuilt (Reset).
//
// Methods are safe for concurrent use; Apply calls must not race with each
// other for the same partition (one indexer per index).
type Index struct {
	mu     sync.RWMutex
	db     *pebble.DB
	closed bool
}

// Open opens (or creates) the index in dir. Pebble locks the directory: a
// second process opening it fails.
func Open(dir string) (*Index, error) { return openFS(dir, nil) }

// openFS opens the index in dir of fs (nil: the disk).
func openFS(dir string, fs vfs.FS) (*Index, error) {
	// A larger memtable than Pebble's 4 MiB default: index entries arrive in
	// the order of the events topic, not of their keys, and fewer flushes
	// mean fewer compactions competing with the processor for the CPU.
	//
	// No write-ahead log: every batch (entries with their checkpoint) goes
	// to the memtable only, and memtables reach disk whole and in order
	// (a flush, Close), so what a crash keeps is a prefix of the batches,
	// each with its own checkpoint: the checkpoint on disk is never ahead
	// of the entries on disk, and the indexer reads the rest of the topic
	// again (TestCrashKeepsAPrefixOfBatches). The index is derived from
	// the events topic; the WAL cost a write per batch for nothing more.
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: quietLogger{}, MemTableSize: 32 << 20, DisableWAL: true, FS: fs})
	if err != nil {
		return nil, fmt.Errorf("history: open index %s: %w", dir, err)
	}
	x := &Index{db: db}
	if err := x.checkFormat(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return x, nil
}

// checkFormat empties an index written with another key layout (the
// indexer then reads the topic from its start) and records this one.
func (x *Index) checkFormat() error {
	v, ok, err := x.get(formatKey)
	if err != nil {
		return err
	}
	if ok && len(v) == 1 && v[0] == formatVersion {
		return nil
	}
	b := x.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte{metaPrefix}, []byte{entryPrefix + 1}, nil); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if err := b.Set(formatKey, []byte{formatVersion}, nil); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return x.commitDurably(b)
}

// commitDurably commits b and flushes it to disk (there is no write-ahead
// log to make a Sync commit durable).
func (x *Index) commitDurably(b *pebble.Batch) error {
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if err := x.db.Flush(); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// Close flushes what the index holds in memory to disk and closes it.
func (x *Index) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return ErrClosed
	}
	x.closed = true
	return errors.Join(x.db.Flush(), x.db.Close())
}

func (x *Index) get(key []byte) ([]byte, bool, error) {
	v, c, err := x.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("history: %w", err)
	}
	out := bytes.Clone(v)
	_ = c.Close()
	return out, true, nil
}

// Checkpoint returns the next offset of partition part the index has not
// read, and ok=false when the index never recorded one for it.
func (x *Index) Checkpoint(part int32) (next int64, ok bool, err error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.closed {
		return 0, false, ErrClosed
	}
	v, ok, err := x.get(checkpointKey(part))
	if err != nil || !ok {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("history: checkpoint of partition %d is %d bytes", part, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// TopicID returns the events topic id the index was built from (zero when
// none was recorded).
func (x *Index) TopicID() ([16]byte, error) {
	var id [16]byte
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.closed {
		return id, ErrClosed
	}
	v, ok, err := x.get(topicIDKey)
	if err == nil && ok && len(v) == 16 {
		copy(id[:], v)
	}
	return id, err
}

// Stats counts what one Apply did.
type Stats struct {
	// Indexed is the number of event records written to the index.
	Indexed int
	// Skipped is the number of records without a readable aggregate type,
	// key or version header (not written by a kcqrs processor): they are
	// not in any aggregate's history.
	Skipped int
}

// Apply indexes records of partition part (in offset order) and moves the
// partition's checkpoint to next, in one atomic Pebble batch. A checkpoint
// below the stored one is left as it is (a re-read after a crash).
func (x *Index) Apply(part int32, recs []*kgo.Record, next int64) (Stats, error) {
	var e entries
	for _, r := range recs {
		e.addRecord(r)
	}
	return x.apply(part, &e, next)
}

// addRecord adds r's entry, or counts it skipped.
func (e *entries) addRecord(r *kgo.Record) {
	aggType, version, ok := eventHeaders(r)
	if !ok || len(r.Key) == 0 {
		e.skipped++
		return
	}
	e.add([]byte(aggType), r.Key, version, r.Partition, r.Offset, r.Timestamp.UnixMilli())
}

// entries are index entries to write in one batch: their keys side by side
// in one buffer (no allocation per entry).
type entries struct {
	buf     []byte
	ents    []entry
	tmp     []entry // sortEntries' scratch
	counts  []int32 // sortEntries' buckets
	skipped int
}

type entry struct {
	// abbr is the key's first 8 bytes after 0x01, big-endian (the CRC
	// and the stream's first bytes): the sort compares it first.
	abbr       uint64
	start, end int32 // the key in buf
	vend       int32 // the value follows the key in buf, up to vend
}

func (e *entries) reset() {
	e.buf, e.ents, e.skipped = e.buf[:0], e.ents[:0], 0
}

func (e *entries) add(aggType, id []byte, version int64, part int32, offset, tsMillis int64) {
	start := len(e.buf)
	k := appendStream(e.buf, aggType, id)
	k = appendVersion(k, uint64(version))
	k = binary.AppendUvarint(k, uint64(uint32(part)))
	k = binary.AppendUvarint(k, uint64(offset))
	end := len(k)
	k = binary.AppendVarint(k, tsMillis)
	e.buf = k
	var abbr [8]byte
	copy(abbr[:], k[start+1:end])
	e.ents = append(e.ents, entry{abbr: binary.BigEndian.Uint64(abbr[:]), start: int32(start), end: int32(end), vend: int32(len(k))})
}

func (e *entries) key(en *entry) []byte { return e.buf[en.start:en.end] }

func (e *entries) compare(a, b *entry) int {
	if a.abbr != b.abbr {
		return cmp.Compare(a.abbr, b.abbr)
	}
	return bytes.Compare(e.key(a), e.key(b))
}

// sortEntries puts e.ents in key order: a counting sort into buckets by
// the top bits of the CRC-32C that starts every key (evenly spread, about
// 4 entries a bucket), then an insertion sort of each bucket. tmp is
// scratch space, returned for reuse.
func (e *entries) sortEntries(tmp []entry) []entry {
	n := len(e.ents)
	if n < 32 {
		slices.SortFunc(e.ents, func(a, b entry) int { return e.compare(&a, &b) })
		return tmp
	}
	shift := 64 - min(bits.Len(uint(n/4)), 14)
	nb := 1 << (64 - shift)
	counts := slices.Grow(e.counts[:0], nb+1)[:nb+1]
	clear(counts)
	e.counts = counts
	for i := range e.ents {
		counts[e.ents[i].abbr>>shift+1]++
	}
	for i := 1; i <= nb; i++ {
		counts[i] += counts[i-1]
	}
	tmp = slices.Grow(tmp[:0], n)[:n]
	for i := range e.ents {
		b := e.ents[i].abbr >> shift
		tmp[counts[b]] = e.ents[i]
		counts[b]++
	}
	// counts[b] is now the end of bucket b; bucket b starts at the end of
	// bucket b-1.
	lo := int32(0)
	for b := 0; b < nb; b++ {
		hi := counts[b]
		for i := lo + 1; i < hi; i++ {
			for j := i; j > lo && e.compare(&tmp[j], &tmp[j-1]) < 0; j-- {
				tmp[j], tmp[j-1] = tmp[j-1], tmp[j]
			}
		}
		lo = hi
	}
	e.ents, tmp = tmp, e.ents
	return tmp
}

func (x *Index) apply(part int32, e *entries, next int64) (Stats, error) {
	st := Stats{Indexed: len(e.ents), Skipped: e.skipped}
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.closed {
		return Stats{}, ErrClosed
	}
	// In key order: Pebble inserts a batch into its memtable (a skiplist)
	// with one cursor, so a sorted key is found near the previous one
	// instead of searched for from the top. The order only matters for
	// speed (a batch is applied whole in any order).
	e.tmp = e.sortEntries(e.tmp)
	// Sized for the entries (a Set costs the key, the value and about 8
	// bytes of lengths), so the batch does not grow by copying.
	b := x.db.NewBatchWithSize(len(e.buf) + len(e.ents)*8 + 64)
	defer b.Close()
	for i := range e.ents {
		en := &e.ents[i]
		if err := b.Set(e.buf[en.start:en.end], e.buf[en.end:en.vend], nil); err != nil {
			return Stats{}, fmt.Errorf("history: %w", err)
		}
	}
	cur, ok, err := x.get(checkpointKey(part))
	if err != nil {
		return Stats{}, err
	}
	if !ok || len(cur) != 8 || int64(binary.BigEndian.Uint64(cur)) < next {
		if err := b.Set(checkpointKey(part), binary.BigEndian.AppendUint64(nil, uint64(next)), nil); err != nil {
			return Stats{}, fmt.Errorf("history: %w", err)
		}
	}
	// In the memtable only (no WAL): a write lost to a crash is read again
	// from the events topic (the checkpoint is lost with it).
	if err := b.Commit(pebble.NoSync); err != nil {
		return Stats{}, fmt.Errorf("history: %w", err)
	}
	return st, nil
}

// eventHeaders reads the aggregate type and version headers a kcqrs
// processor puts on every event (handle.go). The last header of a name
// wins, as everywhere in kcqrs.
func eventHeaders(r *kgo.Record) (aggType string, version int64, ok bool) {
	var haveType, haveVersion bool
	for _, h := range r.Headers {
		switch h.Key {
		case wire.HeaderAggregateType:
			aggType, haveType = string(h.Value), len(h.Value) > 0
		case wire.HeaderVersion:
			v, err := strconv.ParseInt(string(h.Value), 10, 64)
			version, haveVersion = v, err == nil && v > 0
		}
	}
	return aggType, version, haveType && haveVersion
}

// Lookup returns the pointers of the aggregate's events with versions in
// [from, to] (to <= 0: no upper bound), in version order.
func (x *Index) Lookup(aggType, id string, from, to int64) ([]Pointer, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.closed {
		return nil, ErrClosed
	}
	prefix := streamPrefix(aggType, id)
	lower := appendVersion(bytes.Clone(prefix), uint64(max(from, 0)))
	upper := bytes.Clone(prefix)
	if to > 0 {
		upper = appendVersion(upper, uint64(to)+1)
	} else {
		upper = append(upper, versionEnd)
	}
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer it.Close()
	var out []Pointer
	for it.First(); it.Valid(); it.Next() {
		v, part, off, ok := parseTail(it.Key()[len(prefix):])
		ts, n := binary.Varint(it.Value())
		if !ok || n <= 0 || n != len(it.Value()) {
			return nil, fmt.Errorf("history: malformed index entry for %s %q", aggType, id)
		}
		out = append(out, Pointer{Version: v, Partition: part, Offset: off, TimestampMillis: ts})
	}
	return out, it.Error()
}

// Reset deletes every entry and checkpoint and records the events topic's
// id, atomically: the next indexer run reads the topic from its start.
func (x *Index) Reset(topicID [16]byte) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.closed {
		return ErrClosed
	}
	b := x.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte{metaPrefix}, []byte{entryPrefix + 1}, nil); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if err := b.Set(topicIDKey, topicID[:], nil); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if err := b.Set(formatKey, []byte{formatVersion}, nil); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return x.commitDurably(b)
}

// Dump calls fn for every entry, in key order (tests compare a live index
// with a rebuilt one).
func (x *Index) Dump(fn func(aggType, id string, p Pointer)) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.closed {
		return ErrClosed
	}
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: []byte{entryPrefix}, UpperBound: []byte{entryPrefix + 1}})
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) < 5 {
			return fmt.Errorf("history: malformed key")
		}
		k = k[5:]
		tl, n := binary.Uvarint(k)
		if n <= 0 || uint64(len(k)-n) < tl {
			return fmt.Errorf("history: malformed key")
		}
		aggType := string(k[n : n+int(tl)])
		k = k[n+int(tl):]
		il, n := binary.Uvarint(k)
		if n <= 0 || uint64(len(k)-n) < il {
			return fmt.Errorf("history: malformed key")
		}
		id := string(k[n : n+int(il)])
		v, part, off, ok := parseTail(k[n+int(il):])
		ts, m := binary.Varint(it.Value())
		if !ok || m <= 0 || m != len(it.Value()) {
			return fmt.Errorf("history: malformed entry")
		}
		fn(aggType, id, Pointer{Version: v, Partition: part, Offset: off, TimestampMillis: ts})
	}
	return it.Error()
}

// quietLogger keeps Pebble's informational lines out of the process's log;
// a fatal error still ends the process, as Pebble's default does.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	slog.Error(fmt.Sprintf("history: pebble: "+format, args...))
}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("history: pebble: "+format, args...))
}
