package projection

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/lovoo/goka/storage"
)

// Keys of a PebbleStorage: table entries live under dataPrefix, so that the
// offset key can never collide with an entry nor show up in an iteration
// (goka's LevelDB store mixes them and skips "__offset" while iterating).
var (
	dataPrefix = []byte{'d'}
	offsetKey  = []byte{'o'}
)

// ErrStorageClosed is returned by a PebbleStorage used after Close.
var ErrStorageClosed = errors.New("projection: storage closed")

// PebbleStorage is goka's storage.Storage on Pebble: one store per table
// partition, with the partition's table offset kept in the same store.
//
// Writes are not synced one by one: the table topic is the source of truth,
// and goka re-reads it from the stored offset on start, so a store that
// lost its last writes in a crash catches up instead of going wrong.
type PebbleStorage struct {
	dir string
	opt *pebble.Options

	mu sync.RWMutex
	db *pebble.DB
	// writeErrs counts the failed Set and Delete calls (goka's own
	// writes): failWatch tells by it a write that failed while a session
	// ends, which goka reports with a Fail that returns.
	writeErrs atomic.Int64
}

// NewPebbleStorage returns a storage in dir (created on Open). opts may be
// nil for Pebble's defaults.
func NewPebbleStorage(dir string, opts *pebble.Options) *PebbleStorage {
	if opts == nil {
		opts = &pebble.Options{Logger: quietLogger{}}
	}
	return &PebbleStorage{dir: dir, opt: opts}
}

// PebbleBuilder builds one PebbleStorage per table partition under dir, in
// <dir>/<topic>.<partition> (the layout of goka's LevelDB builder), sharing
// one block cache of cacheBytes (0: 8 MiB).
func PebbleBuilder(dir string, cacheBytes int64) storage.Builder {
	return pebbleBuilder(dir, cacheBytes, nil)
}

// storeSet remembers the stores a builder made, so the query server can read
// how far each view partition has come (its stored offset).
type storeSet struct {
	mu sync.Mutex
	m  map[string]*PebbleStorage
}

func storeKey(topic string, partition int32) string { return fmt.Sprintf("%s.%d", topic, partition) }

func (s *storeSet) get(topic string, partition int32) *PebbleStorage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[storeKey(topic, partition)]
}

// partStore is one partition's store of a table.
type partStore struct {
	partition int32
	store     *PebbleStorage
}

// all returns the stores of topic the builder made (closed ones included:
// they answer ErrStorageClosed).
func (s *storeSet) all(topic string) []partStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []partStore
	for k, st := range s.m {
		rest, ok := strings.CutPrefix(k, topic+".")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(rest, 10, 32); err == nil {
			out = append(out, partStore{partition: int32(n), store: st})
		}
	}
	return out
}

func pebbleBuilder(dir string, cacheBytes int64, set *storeSet) storage.Builder {
	if cacheBytes <= 0 {
		cacheBytes = 8 << 20
	}
	cache := pebble.NewCache(cacheBytes)
	return func(topic string, partition int32) (storage.Storage, error) {
		st := NewPebbleStorage(filepath.Join(dir, storeKey(topic, partition)), &pebble.Options{
			Cache:        cache,
			MemTableSize: 4 << 20,
			Logger:       quietLogger{},
			// No write-ahead log: every Set would otherwise append to it and
			// wake its writer (goka's path writes two per record: the entry
			// and the table offset). A store is derived from its table topic:
			// a crash loses the memtables since the last flush, entries and
			// offset key alike (a consistent prefix of the writes), and goka
			// re-reads the table from that older offset on start. Close and
			// MarkRecovered flush.
			DisableWAL: true,
		})
		if set != nil {
			set.mu.Lock()
			if set.m == nil {
				set.m = map[string]*PebbleStorage{}
			}
			set.m[storeKey(topic, partition)] = st
			set.mu.Unlock()
		}
		return st, nil
	}
}

// Open implements storage.Storage.
func (s *PebbleStorage) Open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return nil
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("projection: storage: %w", err)
	}
	db, err := pebble.Open(s.dir, s.opt)
	if err != nil {
		return fmt.Errorf("projection: open storage %s: %w", s.dir, err)
	}
	s.db = db
	return nil
}

// Close implements storage.Storage. Closing twice is harmless.
func (s *PebbleStorage) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Flush()
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	s.db = nil
	if err != nil {
		return fmt.Errorf("projection: close storage %s: %w", s.dir, err)
	}
	return nil
}

func dataKey(key string) []byte {
	return append(append(make([]byte, 0, len(key)+1), dataPrefix...), key...)
}

func (s *PebbleStorage) get(key []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrStorageClosed
	}
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("projection: storage get: %w", err)
	}
	out := bytes.Clone(v)
	closer.Close()
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

func (s *PebbleStorage) set(key, value []byte, opts *pebble.WriteOptions) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrStorageClosed
	}
	if err := s.db.Set(key, value, opts); err != nil {
		return fmt.Errorf("projection: storage set: %w", err)
	}
	return nil
}

// setEntries writes table entries in one Pebble batch (the accounts
// group's batched writes; see tableWriter).
func (s *PebbleStorage) setEntries(entries []pendingEntry) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrStorageClosed
	}
	b := s.db.NewBatch()
	defer b.Close()
	var key []byte // the batch copies keys: one buffer for all of them
	for i := range entries {
		e := &entries[i]
		if !e.store {
			continue
		}
		key = append(append(key[:0], dataPrefix...), e.key...)
		if err := b.Set(key, e.raw, nil); err != nil {
			return fmt.Errorf("projection: storage batch: %w", err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("projection: storage batch: %w", err)
	}
	return nil
}

// Has implements storage.Storage.
func (s *PebbleStorage) Has(key string) (bool, error) {
	v, err := s.get(dataKey(key))
	return v != nil, err
}

// Get implements storage.Storage: nil (and no error) for a missing key.
func (s *PebbleStorage) Get(key string) ([]byte, error) { return s.get(dataKey(key)) }

// Set implements storage.Storage. A nil value is refused, since Get could not
// tell it from a missing key.
func (s *PebbleStorage) Set(key string, value []byte) error {
	if value == nil {
		s.writeErrs.Add(1)
		return fmt.Errorf("projection: storage set %q: nil value", key)
	}
	err := s.set(dataKey(key), value, pebble.NoSync)
	if err != nil {
		s.writeErrs.Add(1)
	}
	return err
}

// Delete implements storage.Storage. Deleting a missing key is no error.
func (s *PebbleStorage) Delete(key string) error {
	err := s.delete(key)
	if err != nil {
		s.writeErrs.Add(1)
	}
	return err
}

func (s *PebbleStorage) delete(key string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrStorageClosed
	}
	if err := s.db.Delete(dataKey(key), pebble.NoSync); err != nil {
		return fmt.Errorf("projection: storage delete: %w", err)
	}
	return nil
}

// GetOffset implements storage.Storage.
func (s *PebbleStorage) GetOffset(def int64) (int64, error) {
	v, err := s.get(offsetKey)
	if err != nil || v == nil {
		return def, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("projection: storage %s: corrupt offset (%d bytes)", s.dir, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// SetOffset implements storage.Storage. Not synced (goka sets it for every
// record): a store that loses its latest offsets in an OS crash re-reads a
// little more of the table topic, which is idempotent.
func (s *PebbleStorage) SetOffset(offset int64) error {
	return s.set(offsetKey, binary.BigEndian.AppendUint64(nil, uint64(offset)), pebble.NoSync)
}

// MarkRecovered implements storage.Storage: the recovered state is flushed.
func (s *PebbleStorage) MarkRecovered() error {
	s.mu.RLock()
	db := s.db
	s.mu.RUnlock()
	if db == nil {
		return ErrStorageClosed
	}
	if err := db.Flush(); err != nil {
		return fmt.Errorf("projection: storage flush: %w", err)
	}
	return nil
}

// Iterator implements storage.Storage: all entries, in key order, from a
// snapshot taken now.
func (s *PebbleStorage) Iterator() (storage.Iterator, error) {
	return s.IteratorWithRange(nil, nil)
}

// IteratorWithRange implements storage.Storage over [start, limit). As in
// goka's LevelDB store, an empty limit makes start a prefix: the iterator
// then yields the keys that begin with start.
func (s *PebbleStorage) IteratorWithRange(start, limit []byte) (storage.Iterator, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrStorageClosed
	}
	lower := append(bytes.Clone(dataPrefix), start...)
	var upper []byte
	if len(limit) > 0 {
		upper = append(bytes.Clone(dataPrefix), limit...)
	} else {
		upper = prefixEnd(lower)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("projection: storage iterator: %w", err)
	}
	return &pebbleIter{it: it}, nil
}

// prefixEnd is the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// pebbleIter follows goka's LevelDB iterator, which goka's merge iterator
// (behind View.Iterator) relies on: Next must be called before the first
// pair; Seek positions the iterator on the first pair at or after the key
// (Key and Value return it at once) and a following Next moves past it.
type pebbleIter struct {
	it      *pebble.Iterator
	started bool
	err     error
}

func (i *pebbleIter) Next() bool {
	switch {
	case i.it == nil:
		return false
	case !i.started:
		i.started = true
		return i.it.First()
	}
	return i.it.Next()
}

func (i *pebbleIter) Err() error {
	if i.err != nil {
		return i.err
	}
	if i.it == nil {
		return nil
	}
	return i.it.Error()
}

func (i *pebbleIter) Key() []byte {
	if i.it == nil || !i.it.Valid() {
		return nil
	}
	return i.it.Key()[len(dataPrefix):]
}

func (i *pebbleIter) Value() ([]byte, error) {
	if i.it == nil || !i.it.Valid() {
		return nil, nil
	}
	return i.it.ValueAndErr()
}

func (i *pebbleIter) Release() {
	if i.it != nil {
		i.err = i.it.Close()
		i.it = nil
	}
}

func (i *pebbleIter) Seek(key []byte) bool {
	if i.it == nil {
		return false
	}
	i.started = true
	return i.it.SeekGE(append(bytes.Clone(dataPrefix), key...))
}

// quietLogger drops Pebble's informational logs (one line per store opened);
// errors reach the caller as errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
