package snapshots

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Errors. Every error of this package starts with "snapshots: " and wraps its
// cause (errors.Is and errors.As see through it); only an error returned by a
// Scan callback is passed back as is.
var (
	// ErrClosed is returned by every operation on a closed store, and by a
	// second Close.
	ErrClosed = errors.New("snapshots: store closed")
	// ErrNoCheckpoint is returned by Apply for a batch without a checkpoint:
	// a write that does not say which changelog offset it reflects could make
	// the store claim data the changelog does not have.
	ErrNoCheckpoint = errors.New("snapshots: batch has no checkpoint")
	// ErrCheckpointRegression is returned by Apply for a batch whose
	// checkpoint is below the store's: the caller replays an older part of
	// the changelog over newer state (a bug, or a stale worker). Wipe first
	// to rebuild a store from an earlier offset.
	ErrCheckpointRegression = errors.New("snapshots: checkpoint would move backwards")
)

// KV is the contract of a snapshot store; Store implements it, and package
// snapshots/storetest checks any implementation against it.
//
// Get, Checkpoint, Count and Scan must be safe for concurrent use with each
// other and with Apply, Wipe and Close. Apply and Wipe may be called from
// one goroutine at a time, but implementations must not corrupt state if they
// are not. After Close every method returns an error wrapping ErrClosed and
// never panics.
type KV interface {
	// Get returns the value of key, and ok=false if the key is missing. The
	// value is a copy the caller owns.
	Get(key []byte) (value []byte, ok bool, err error)
	// Checkpoint returns the next changelog offset the store has not yet
	// applied, and ok=false if the store never recorded one (new or wiped).
	Checkpoint() (next int64, ok bool, err error)
	// NewBatch returns an empty batch for Apply.
	NewBatch() *Batch
	// Apply writes the batch's puts, deletes and checkpoint atomically: a
	// reader or a reopened store sees all of them or none. It fails with
	// ErrNoCheckpoint if the batch has no checkpoint and with
	// ErrCheckpointRegression if the checkpoint is below the store's; then
	// nothing is written. Apply does not modify the batch.
	Apply(b *Batch) error
	// Wipe deletes every key and the checkpoint, atomically.
	Wipe() error
	// Count returns the number of keys (may take time linear in it).
	Count() (int, error)
	// Scan calls fn for every key and value in byte-wise key order, as of one
	// point in time (a batch applied meanwhile is seen entirely or not at
	// all). key and value are valid only during the call and must not be
	// modified. Scan stops at the first error of fn and returns it. fn may
	// call Get; it must not call Close.
	Scan(fn func(key, value []byte) error) error
	// Close releases the store, after waiting for running calls to return.
	// Data applied before stays (on disk for Store).
	Close() error
}

var _ KV = (*Store)(nil)

// Key layout. Every Pebble key starts with one byte that says what it is, so
// snapshot keys (any bytes, the empty key included) can never collide with
// the store's own keys, and a snapshot scan is a simple range.
const (
	metaPrefix = 0x00 // the store's own keys
	dataPrefix = 0x01 // snapshot keys
)

var (
	// keyFormat holds the store's layout version (formatVersion), written
	// when the store is created, so a future layout change can tell old
	// stores apart instead of misreading them.
	keyFormat = []byte{metaPrefix, 'f', 'o', 'r', 'm', 'a', 't'}
	// keyCheckpoint holds the checkpoint, 8 bytes big-endian.
	keyCheckpoint = []byte{metaPrefix, 'c', 'h', 'e', 'c', 'k', 'p', 'o', 'i', 'n', 't'}

	dataStart = []byte{dataPrefix}
	dataEnd   = []byte{dataPrefix + 1}
)

const formatVersion = 1

// Store is the Pebble snapshot store of one partition. Get, Checkpoint, Count
// and Scan are safe for concurrent use, also with Apply, Wipe and Close;
// Apply and Wipe serialize among themselves.
type Store struct {
	db    *pebble.DB
	dir   string
	fs    vfs.FS
	cache *Cache // shared cache to release on Close, or nil

	gate gate
	// writeMu serializes Apply and Wipe, so that Apply's regression check
	// and its write see the same checkpoint.
	writeMu sync.Mutex
}

// Open opens the store in dir, creating it (and missing parent directories)
// if needed. Writes are not synced (pebble.NoSync): the changelog is the
// truth, see the package documentation. A store can be open only once at a
// time; a second Open of the same dir fails until the first is closed.
func Open(dir string, opts Options) (*Store, error) {
	dir, err := absDir(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshots: open: %w", err)
	}
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Cache != nil {
		if err := opts.Cache.acquire(); err != nil {
			return nil, err
		}
	}
	db, err := pebble.Open(dir, opts.pebbleOptions())
	if err != nil {
		if opts.Cache != nil {
			opts.Cache.release()
		}
		return nil, fmt.Errorf("snapshots: open %s: %w", dir, err)
	}
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	s := &Store{db: db, dir: dir, fs: fs, cache: opts.Cache}
	removeLoaderTables(fs, dir)
	s.gate.init()
	if err := s.checkFormat(); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("snapshots: open %s: %w", dir, err)
	}
	return s, nil
}

// checkFormat stamps a new store with formatVersion and refuses stores of
// another layout.
func (s *Store) checkFormat() error {
	v, closer, err := s.db.Get(keyFormat)
	if errors.Is(err, pebble.ErrNotFound) {
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], formatVersion)
		return s.db.Set(keyFormat, buf[:], pebble.NoSync)
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	if len(v) != 8 {
		return fmt.Errorf("corrupt format key (%d bytes)", len(v))
	}
	if got := binary.BigEndian.Uint64(v); got != formatVersion {
		return fmt.Errorf("store format %d, this version reads only format %d", got, formatVersion)
	}
	return nil
}

// Dir returns the directory the store was opened in, as an absolute path.
func (s *Store) Dir() string { return s.dir }

// NewBatch returns an empty batch. It is the same as new(Batch): batches are
// not tied to a store.
func (s *Store) NewBatch() *Batch { return new(Batch) }

// Get returns a copy of the value of key, and ok=false if key is missing.
func (s *Store) Get(key []byte) (value []byte, ok bool, err error) {
	if !s.gate.enter() {
		return nil, false, ErrClosed
	}
	defer s.gate.exit()
	v, closer, err := s.db.Get(dataKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("snapshots: get: %w", err)
	}
	value = make([]byte, len(v))
	copy(value, v)
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("snapshots: get: %w", err)
	}
	return value, true, nil
}

// Checkpoint returns the next changelog offset the store has not yet
// applied, and ok=false if it never recorded one (a new or wiped store).
func (s *Store) Checkpoint() (next int64, ok bool, err error) {
	if !s.gate.enter() {
		return 0, false, ErrClosed
	}
	defer s.gate.exit()
	next, ok, err = s.checkpoint()
	if err != nil {
		return 0, false, fmt.Errorf("snapshots: checkpoint: %w", err)
	}
	return next, ok, nil
}

func (s *Store) checkpoint() (int64, bool, error) {
	v, closer, err := s.db.Get(keyCheckpoint)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, false, fmt.Errorf("corrupt checkpoint (%d bytes)", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// Apply writes the batch's puts, deletes and checkpoint in one atomic Pebble
// batch, without fsync. See KV.Apply for the rules; the batch is not
// modified and may be applied to other stores too.
func (s *Store) Apply(b *Batch) error {
	if b == nil {
		return errors.New("snapshots: apply: nil batch")
	}
	next, ok := b.Checkpoint()
	if !ok {
		return ErrNoCheckpoint
	}
	if next < 0 {
		return fmt.Errorf("snapshots: apply: negative checkpoint %d", next)
	}
	if !s.gate.enter() {
		return ErrClosed
	}
	defer s.gate.exit()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()

	cur, ok, err := s.checkpoint()
	if err != nil {
		return fmt.Errorf("snapshots: apply: %w", err)
	}
	if ok && next < cur {
		return fmt.Errorf("%w: store at %d, batch at %d", ErrCheckpointRegression, cur, next)
	}

	// One byte of prefix per key, plus Pebble's per-entry overhead (kind
	// and two varints) and the checkpoint.
	pb := s.db.NewBatchWithSize(b.Size() + b.Len()*(1+1+2*binary.MaxVarintLen32) + 64)
	defer pb.Close()
	for _, op := range b.ops {
		// Deferred ops let Pebble's batch hold the prefixed key without a
		// temporary copy.
		key, value := b.buf[op.start:op.keyEnd], b.buf[op.keyEnd:op.end]
		var d *pebble.DeferredBatchOp
		if op.del {
			d = pb.DeleteDeferred(1 + len(key))
		} else {
			d = pb.SetDeferred(1+len(key), len(value))
			copy(d.Value, value)
		}
		d.Key[0] = dataPrefix
		copy(d.Key[1:], key)
		if err := d.Finish(); err != nil {
			return fmt.Errorf("snapshots: apply: %w", err)
		}
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(next))
	if err := pb.Set(keyCheckpoint, buf[:], nil); err != nil {
		return fmt.Errorf("snapshots: apply: %w", err)
	}
	if err := s.db.Apply(pb, pebble.NoSync); err != nil {
		return fmt.Errorf("snapshots: apply: %w", err)
	}
	return nil
}

// Wipe deletes every snapshot key and the checkpoint in one atomic batch
// (range deletions: constant time; compactions reclaim the space later). Use
// it when the store is ahead of the changelog, before restoring from the
// changelog's start. To give the disk space back at once, Close and Remove
// the store instead.
func (s *Store) Wipe() error {
	if !s.gate.enter() {
		return ErrClosed
	}
	defer s.gate.exit()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()

	pb := s.db.NewBatch()
	defer pb.Close()
	if err := pb.DeleteRange(dataStart, dataEnd, nil); err != nil {
		return fmt.Errorf("snapshots: wipe: %w", err)
	}
	if err := pb.Delete(keyCheckpoint, nil); err != nil {
		return fmt.Errorf("snapshots: wipe: %w", err)
	}
	if err := s.db.Apply(pb, pebble.NoSync); err != nil {
		return fmt.Errorf("snapshots: wipe: %w", err)
	}
	return nil
}

// Count returns the number of snapshot keys. It reads every key.
func (s *Store) Count() (int, error) {
	n := 0
	err := s.iterate(func(it *pebble.Iterator) error {
		for it.First(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("snapshots: count: %w", err)
	}
	return n, nil
}

// Scan calls fn for every snapshot key and value in byte-wise key order, as of
// one point in time. key and value are valid only during the call. Scan stops
// at the first error of fn and returns it unwrapped. fn may call Get; it must
// not call Close (Close waits for Scan to return).
func (s *Store) Scan(fn func(key, value []byte) error) error {
	var fnErr error
	err := s.iterate(func(it *pebble.Iterator) error {
		for it.First(); it.Valid(); it.Next() {
			v, err := it.ValueAndErr()
			if err != nil {
				return err
			}
			k := it.Key()[1:]
			if fnErr = fn(k[:len(k):len(k)], v[:len(v):len(v)]); fnErr != nil {
				return fnErr
			}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("snapshots: scan: %w", err)
	}
	return nil
}

// iterate runs f with an iterator over the snapshot keys and returns the first
// of f's, the iterator's and Close's errors.
func (s *Store) iterate(f func(it *pebble.Iterator) error) (err error) {
	if !s.gate.enter() {
		return ErrClosed
	}
	defer s.gate.exit()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: dataStart, UpperBound: dataEnd})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := it.Close(); err == nil {
			err = cerr
		}
	}()
	if err := f(it); err != nil {
		return err
	}
	return it.Error()
}

// Close waits for running operations, then closes the database (Pebble syncs
// the WAL on close) and releases the shared cache. Operations after Close,
// and a second Close, return ErrClosed. Close must not be called from within
// a Scan callback.
func (s *Store) Close() error {
	if !s.gate.close() {
		return ErrClosed
	}
	err := s.db.Close()
	if s.cache != nil {
		s.cache.release()
	}
	if err != nil {
		return fmt.Errorf("snapshots: close %s: %w", s.dir, err)
	}
	return nil
}

func dataKey(key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = dataPrefix
	copy(k[1:], key)
	return k
}

// gate lets operations run until Close, and lets Close wait for the running
// ones, without a lock on the read path and without deadlock when an
// operation runs inside another (Get inside a Scan callback while Close is
// waiting: a RWMutex would deadlock there, the gate answers ErrClosed).
//
// state counts the operations inside the gate; closedBit marks it closed.
type gate struct {
	state   atomic.Int64
	once    sync.Once
	drained chan struct{} // closed when the gate is closed and empty
}

const closedBit = 1 << 62

func (g *gate) init() { g.drained = make(chan struct{}) }

// enter reports whether the caller may go on; if so it must call exit.
func (g *gate) enter() bool {
	if g.state.Add(1)&closedBit != 0 {
		g.exit()
		return false
	}
	return true
}

func (g *gate) exit() {
	if g.state.Add(-1) == closedBit {
		g.once.Do(func() { close(g.drained) })
	}
}

// close closes the gate and waits until no operation is inside. It returns
// false if the gate was closed already.
func (g *gate) close() bool {
	old := g.state.Or(closedBit)
	if old&closedBit != 0 {
		return false
	}
	if old != 0 {
		<-g.drained
	}
	return true
}
