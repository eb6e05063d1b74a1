package snapshots

import (
	"errors"
	"fmt"
	"log"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Defaults of Options.
const (
	// DefaultMemTableSize is the memtable size of a store when
	// Options.MemTableSize is zero.
	DefaultMemTableSize = 4 << 20
	// DefaultCacheSize is the size of a store's private block cache when
	// Options.Cache is nil and Options.CacheSize is zero.
	DefaultCacheSize = 1 << 20
	// maxMemTableSize is Pebble's limit (MemTableSize must be below 4 GiB).
	maxMemTableSize = 4 << 30
)

// Options configures stores. The zero value is valid: zero fields get the
// documented defaults from EnsureDefaults, and Open validates the result.
type Options struct {
	// Cache is a block cache shared by all stores of a process, created with
	// NewCache. Each store opened with it holds a reference until it is
	// closed. Nil: each store gets a private cache of CacheSize bytes.
	Cache *Cache

	// CacheSize is the size in bytes of a store's private block cache, used
	// only when Cache is nil. Default DefaultCacheSize (1 MiB): small, because
	// a worker may hold many stores; give them a shared Cache instead of
	// growing this.
	CacheSize int64

	// MemTableSize bounds each store's memtable, in bytes. Default
	// DefaultMemTableSize (4 MiB), since a worker may hold many partitions.
	// Pebble may hold up to two memtables per store (one being flushed). Must
	// be below 4 GiB. A batch larger than half of it is written as a memtable
	// of its own, which is correct but slower.
	MemTableSize uint64

	// Logger receives Pebble's log messages (flushes, compactions, WAL
	// recovery, background errors). Default: informational messages are
	// discarded and errors go to the standard library's log package. On a
	// fatal error (corruption, a failed commit) Pebble cannot go on: the
	// message is logged and the store panics.
	Logger func(format string, args ...any)

	// FS replaces the operating system's file system. Tests only: crash
	// simulation (vfs.NewCrashableMem) and fault injection (Pebble's
	// vfs/errorfs). Default: the operating system's.
	FS vfs.FS
}

// EnsureDefaults sets every zero field to its default.
func (o *Options) EnsureDefaults() {
	if o.Cache == nil && o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
}

// Validate reports every problem of the options at once (errors.Join). It is
// meant for options that went through EnsureDefaults; Open does both.
func (o *Options) Validate() error {
	var errs []error
	if o.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("snapshots: CacheSize %d is negative", o.CacheSize))
	}
	if o.Cache != nil && o.CacheSize != 0 {
		errs = append(errs, errors.New("snapshots: set Cache or CacheSize, not both"))
	}
	if o.MemTableSize >= maxMemTableSize {
		errs = append(errs, fmt.Errorf("snapshots: MemTableSize %d must be below 4 GiB", o.MemTableSize))
	}
	return errors.Join(errs...)
}

// pebbleOptions translates validated options to Pebble's.
func (o *Options) pebbleOptions() *pebble.Options {
	po := &pebble.Options{
		CacheSize:    o.CacheSize,
		MemTableSize: o.MemTableSize,
		Logger:       logger{o.Logger},
		FS:           o.FS,
		// New stores get the newest stable on-disk format; existing ones
		// are ratcheted up to it on open.
		FormatMajorVersion: pebble.FormatNewest,
	}
	if o.Cache != nil {
		po.Cache = o.Cache.c
		po.CacheSize = 0
	}
	return po
}

// logger adapts Options.Logger to pebble.Logger.
type logger struct {
	f func(format string, args ...any)
}

func (l logger) Infof(format string, args ...any) {
	if l.f != nil {
		l.f(format, args...)
	}
}

func (l logger) Errorf(format string, args ...any) {
	if l.f != nil {
		l.f(format, args...)
		return
	}
	log.Printf("snapshots: pebble: "+format, args...)
}

// Fatalf must not return (Pebble calls it when it cannot go on). A panic,
// unlike Pebble's default os.Exit, leaves a stack trace and runs deferred
// calls.
func (l logger) Fatalf(format string, args ...any) {
	l.Errorf(format, args...)
	panic(fmt.Sprintf("snapshots: pebble: "+format, args...))
}

// Cache is a block cache that many stores can share. It wraps *pebble.Cache
// and turns Pebble's panics on misuse (opening a store with a cache that was
// already freed) into errors.
type Cache struct {
	c *pebble.Cache

	// mu guards refs, the references taken through this wrapper: one for
	// the creator until Unref, one per open store. Pebble keeps its own
	// count (our refs plus one per open pebble.DB); taking ours under a
	// mutex before Pebble's means Pebble's never drops to zero while a
	// store is being opened.
	mu       sync.Mutex
	refs     int
	released bool
}

// NewCache returns a block cache of size bytes to share among stores (size
// <= 0: DefaultCacheSize). Memory is allocated on demand. The caller holds one
// reference and must call Unref when it opens no more stores with the cache;
// the memory is freed when the caller and all stores using it let go (stores
// do so in Close). Calling Unref right after opening the stores is fine.
func NewCache(size int64) *Cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &Cache{c: pebble.NewCache(size), refs: 1}
}

// Unref releases the creator's reference. Later calls, and calls on a nil
// Cache, do nothing. Open fails once the cache is released and no store holds
// it anymore.
func (c *Cache) Unref() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.released {
		return
	}
	c.released = true
	c.refs--
	c.c.Unref()
}

// acquire takes a reference for a store about to be opened.
func (c *Cache) acquire() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refs == 0 {
		return errors.New("snapshots: cache already released (Unref called and no store holds it)")
	}
	c.refs++
	c.c.Ref()
	return nil
}

// release drops a reference taken by acquire, after the store's pebble.DB is
// closed (or failed to open).
func (c *Cache) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refs--
	c.c.Unref()
}
