package snapshots

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Loader writes a long stretch of the changelog into a store: a restore. It
// collects puts and deletes like a Batch, and Flush writes them with a
// checkpoint. A large run is sorted by key (the last operation on a key
// wins), written as one sorted table and ingested into the store, instead
// of going through Pebble's write-ahead log and memtable and being flushed
// and compacted from there: most of a restore's cost before. A small run
// (a warm store catching up a few records) is applied as one batch.
//
// Ingestion gives a run a sequence number above everything in the store, so
// runs flushed in changelog order keep the changelog's order whatever keys
// they share. The checkpoint is written right after the run's table is in
// (a crash between the two leaves data past the checkpoint, which the next
// restore reads again from the checkpoint: the same records, applied in the
// same order, give the same state, and the store never claims an offset it
// has not applied).
//
// A Loader is not safe for concurrent use; the store's Apply, Wipe and other
// Loaders' Flush are serialized with it.
type Loader struct {
	s    *Store
	b    Batch
	ord  []sortKey // the run's keys sorted, reused
	wbuf []byte    // the table file's write buffer, reused
}

// sortKey is a run's key and the index of its operation.
type sortKey struct {
	key []byte
	i   int32
}

// ingestMin is the smallest run that Flush ingests as a table; smaller runs
// are applied as a batch (a table per few records would only make work for
// compactions).
const ingestMin = 256 << 10

// tableSeq numbers the temporary table files of a process.
var tableSeq atomic.Uint64

// removeLoaderTables deletes table files a Loader left in dir when its
// process died between writing and ingesting them (Pebble does not know
// them, so nothing else would).
func removeLoaderTables(fs vfs.FS, dir string) {
	names, err := fs.List(dir)
	if err != nil {
		return
	}
	for _, n := range names {
		if strings.HasPrefix(n, "restore-") && strings.HasSuffix(n, ".sst") {
			_ = fs.Remove(fs.PathJoin(dir, n))
		}
	}
}

// NewLoader returns an empty Loader for the store, with room for runs of
// about runBytes of keys and values (0: grown as needed), so that a run is
// not copied as its buffer grows.
func (s *Store) NewLoader(runBytes int) *Loader {
	l := &Loader{s: s}
	if runBytes > 0 {
		l.b.buf = make([]byte, 0, runBytes+runBytes/8)
		l.b.ops = make([]batchOp, 0, runBytes/128)
	}
	return l
}

// Put sets key to value (nil deletes). Both are copied.
func (l *Loader) Put(key, value []byte) { l.b.Put(key, value) }

// Delete removes key. The key is copied.
func (l *Loader) Delete(key []byte) { l.b.Delete(key) }

// Size returns the key and value bytes collected since the last Flush.
func (l *Loader) Size() int { return l.b.Size() }

// Len returns the operations collected since the last Flush.
func (l *Loader) Len() int { return l.b.Len() }

// Flush writes what was collected and sets the checkpoint to next, then
// empties the Loader. The rules of Apply hold: next must not be negative or
// below the store's checkpoint (ErrCheckpointRegression), and nothing is
// written then.
func (l *Loader) Flush(next int64) error {
	l.b.SetCheckpoint(next)
	defer l.b.Reset()
	if l.b.Size() < ingestMin {
		return l.s.Apply(&l.b)
	}
	if next < 0 {
		return fmt.Errorf("snapshots: load: negative checkpoint %d", next)
	}
	s := l.s
	if !s.gate.enter() {
		return ErrClosed
	}
	defer s.gate.exit()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	cur, ok, err := s.checkpoint()
	if err != nil {
		return fmt.Errorf("snapshots: load: %w", err)
	}
	if ok && next < cur {
		return fmt.Errorf("%w: store at %d, load at %d", ErrCheckpointRegression, cur, next)
	}
	if err := l.ingest(); err != nil {
		return fmt.Errorf("snapshots: load: %w", err)
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(next))
	if err := s.db.Set(keyCheckpoint, buf[:], pebble.NoSync); err != nil {
		return fmt.Errorf("snapshots: load: %w", err)
	}
	return nil
}

// ingest writes the collected operations as one table, sorted by key with
// the last operation of each key, and ingests it.
func (l *Loader) ingest() (err error) {
	b := &l.b
	// Sort keys with their position rather than positions alone: one
	// indirection less per comparison (sorting was about a sixth of an
	// ingest). Unstable sort with the position as tie-break: the order of
	// equal keys is kept at pdqsort's cost, not a stable merge sort's.
	l.ord = slices.Grow(l.ord[:0], len(b.ops))
	for i, op := range b.ops {
		l.ord = append(l.ord, sortKey{key: b.buf[op.start:op.keyEnd], i: int32(i)})
	}
	slices.SortFunc(l.ord, func(x, y sortKey) int {
		if c := bytes.Compare(x.key, y.key); c != 0 {
			return c
		}
		return int(x.i - y.i)
	})

	s := l.s
	path := s.fs.PathJoin(s.dir, fmt.Sprintf("restore-%d.sst", tableSeq.Add(1)))
	f, err := s.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := s.fs.Remove(path); rerr != nil && err == nil && !errors.Is(rerr, iofs.ErrNotExist) {
			err = rerr
		}
	}()
	// Uncompressed: the table is read by the compactions that merge it
	// into the store's levels soon after, and those compress it; here
	// compression would be most of the restore's CPU. Row blocks (Pebble
	// v4) rather than the newest columnar format: they cost about a third
	// less to write (BENCHMARKS.md), and the compactions rewrite them in
	// the store's format anyway.
	if l.wbuf == nil {
		l.wbuf = make([]byte, 0, tableWriteBuffer)
	}
	w := sstable.NewWriter(newTableWritable(f, l.wbuf), sstable.WriterOptions{
		TableFormat: min(sstable.TableFormatPebblev4, s.db.FormatMajorVersion().MaxTableFormat()),
		Compression: sstable.NoCompression,
	})
	var k []byte
	for n, sk := range l.ord {
		if n+1 < len(l.ord) && bytes.Equal(l.ord[n+1].key, sk.key) {
			continue // a later operation on the same key wins
		}
		op := b.ops[sk.i]
		k = append(append(k[:0], dataPrefix), sk.key...)
		if op.del {
			err = w.Delete(k)
		} else {
			err = w.Set(k, b.buf[op.keyEnd:op.end])
		}
		if err != nil {
			_ = w.Close()
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return s.db.Ingest(context.Background(), []string{path})
}
