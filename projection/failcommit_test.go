package projection

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lovoo/goka"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/shred"
)

// unused holds the goka.Context methods the handlers do not call (nil:
// they panic).
type unused struct{ goka.Context }

// gokaCtx models goka's cbContext (context.go, partition_processor.go of
// goka v1.1.14) for one message: the message is committed once the
// callback returned and every emit and deferred commit is done without an
// error; any error fails the group asynchronously instead. Fail panics, as
// goka's syncFailer does while the partition runs; with stopping set it
// returns instead, as goka's does once the session's context is done
// (a rebalance or a stop is under way). A panic that leaves the callback
// fails the partition: the message is never committed.
type gokaCtx struct {
	unused
	key       string
	partition int32
	offset    int64
	value     any
	stopping  bool
	valueErr  error // Value fails with it

	mu                 sync.Mutex
	emits, dones       int
	done               bool
	errs               []error
	committed, failed  bool
	syncErr, panicked  any
	emittedTo          []goka.Stream
	emitErr            error // the result of every Emit
	deferredCommitsRun int
}

func (c *gokaCtx) Key() string           { return c.key }
func (c *gokaCtx) Partition() int32      { return c.partition }
func (c *gokaCtx) Offset() int64         { return c.offset }
func (c *gokaCtx) Topic() goka.Stream    { return "events" }
func (c *gokaCtx) Headers() goka.Headers { return goka.Headers{} }
func (c *gokaCtx) Value() any {
	if c.valueErr != nil {
		c.Fail(c.valueErr) // as goka's Value does when the store read fails
		return nil
	}
	return c.value
}
func (c *gokaCtx) Context() context.Context            { return context.Background() }
func (c *gokaCtx) Timestamp() time.Time                { return time.Time{} }
func (c *gokaCtx) SetValue(any, ...goka.ContextOption) { panic("SetValue: not the accounts group's") }

func (c *gokaCtx) Emit(topic goka.Stream, key string, value any, _ ...goka.ContextOption) {
	c.mu.Lock()
	c.emits++
	c.emittedTo = append(c.emittedTo, topic)
	c.mu.Unlock()
	c.emitDone(c.emitErr)
}

func (c *gokaCtx) Fail(err error) {
	c.syncErr = err
	if !c.stopping {
		panic(err)
	}
}

func (c *gokaCtx) DeferCommit() func(error) {
	c.mu.Lock()
	c.emits++
	c.mu.Unlock()
	var once sync.Once
	return func(err error) { once.Do(func() { c.emitDone(err) }) }
}

func (c *gokaCtx) emitDone(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dones++
	c.tryCommit(err)
}

func (c *gokaCtx) tryCommit(err error) {
	if err != nil {
		c.errs = append(c.errs, err)
	}
	if !c.done || c.emits > c.dones {
		return
	}
	if len(c.errs) > 0 {
		c.failed = true
	} else {
		c.committed = true
	}
}

// run calls cb as goka's partition processor does.
func (c *gokaCtx) run(cb goka.ProcessCallback, msg []byte) {
	defer func() {
		if r := recover(); r != nil {
			c.panicked = r // goka fails the partition; finish is never called
		}
	}()
	cb(c, msg)
	c.mu.Lock()
	c.done = true
	c.tryCommit(nil)
	c.mu.Unlock()
}

func (c *gokaCtx) state() (committed, failed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed, c.failed
}

// unitProjector is a projector whose accounts-group writer has one
// partition, an empty store and no client: a batch of commits only
// succeeds (one with records would need the client).
func unitProjector(t *testing.T, e *env, personal *Personal) *Projector {
	p, err := New(Config{Brokers: []string{"127.0.0.1:1"}, StateDir: t.TempDir(), Registry: e.reg,
		Logger: testLogger(), Personal: personal})
	if err != nil {
		t.Fatal(err)
	}
	stores := &storeSet{}
	st, err := pebbleBuilder(t.TempDir(), 0, stores)(TableOf(p.accountsGroup), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	p.w = newTableWriter(nil, stores, p.cfg.Names, 1, &p.c.written, &p.c.forwarded)
	return p
}

// TestAFailedFoldIsNeverCommitted: an event the accounts group cannot fold
// for a reason that is not the event's (here: the key of its owner's
// subject never reached the keyring, Personal.KeyWait passed) must fail the
// group without committing the event, as docs/erasure.md promises ("the
// group stops rather than leave the account unindexed"): the event comes
// again once the keys are followed. goka's Context.Fail panics to do that,
// and guard recovered that panic like a handler's own: the event was
// dead-lettered and committed, and its account never written. While the
// session is ending, Fail does not panic at all, and the event's commit
// (queued in the writer) was released with its batch, and so was the next
// event's.
func TestAFailedFoldIsNeverCommitted(t *testing.T) {
	e := codecEnv(t)
	owners := testOwnerIndex(t)
	dk, err := shred.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := shred.Seal(accountSubject("a1"), &dk, "alice")
	if err != nil {
		t.Fatal(err)
	}
	opened := e.encode("account", "a1", 1, "", account.AccountOpened{Owner: sealed, Currency: "EUR"})
	other := e.encode("folder", "f1", 1, "FolderCreated", nil)
	for _, stopping := range []bool{false, true} {
		name := "running"
		if stopping {
			name = "stopping"
		}
		t.Run(name, func(t *testing.T) {
			// An empty keyring: the subject's key never comes.
			p := unitProjector(t, e, &Personal{Keys: shred.NewKeyring(), Owners: owners, KeyWait: time.Millisecond})
			h := p.guard(p.accountsGroup, p.onEvent)
			c1 := &gokaCtx{key: "a1", offset: 0, stopping: stopping}
			c1.run(h, opened)
			c2 := &gokaCtx{key: "f1", offset: 1, stopping: stopping}
			if c1.panicked == nil {
				// The partition goes on only while the session ends.
				c2.run(h, other)
			}
			p.w.flush()
			p.w.flush()
			if c1.syncErr == nil {
				t.Fatal("the fold did not fail (the test's premise)")
			}
			if ok, _ := c1.state(); ok {
				t.Fatalf("the event whose fold failed (%v) was committed; dead letters to %v", c1.syncErr, c1.emittedTo)
			}
			if ok, _ := c2.state(); ok {
				t.Fatal("the event after the failed one was committed: its offset covers the failed event")
			}
		})
	}
}

// TestAFailedReadIsNeverFolded: an event whose account could not be read
// from the store must be neither folded (onto nothing: an entry with only
// this event, written over the account's), nor dead-lettered (the failure
// is not the event's), nor committed. goka's Value reports the failed read
// with Fail, which does not stop the handler while the session ends, and
// returns nil, as for an account without an entry.
func TestAFailedReadIsNeverFolded(t *testing.T) {
	e := codecEnv(t)
	for _, stopping := range []bool{false, true} {
		p := unitProjector(t, e, nil)
		_ = p.w.stores.get(TableOf(p.accountsGroup), 0).Close() // every read fails
		h := p.guard(p.accountsGroup, p.onEvent)
		c := &gokaCtx{key: "a1", offset: 5, stopping: stopping, valueErr: ErrStorageClosed}
		c.run(h, e.encode("account", "a1", 2, "", account.MoneyDeposited{Amount: 5, Balance: 14}))
		pw := p.w.parts[0]
		if n := len(pw.pending.entries); n != 0 {
			t.Fatalf("stopping %v: the event was folded onto a failed read: %d entries queued (%+v)", stopping, n, pw.pending.entries[0].a)
		}
		if n := len(pw.pending.letters); n != 0 || len(c.emittedTo) != 0 {
			t.Fatalf("stopping %v: the event was dead-lettered (%d, %v)", stopping, n, c.emittedTo)
		}
		p.w.flush()
		if ok, _ := c.state(); ok {
			t.Fatalf("stopping %v: the event whose read failed was committed", stopping)
		}
	}
}

// TestAGokaFailureIsNeverCommitted: goka's own context methods (Value,
// SetValue, Delete, Emit) report a failure with the context's Fail, which
// panics: guard must let that panic through too, or the record is
// dead-lettered and committed without its write (here: the owners group,
// whose store cannot be read).
func TestAGokaFailureIsNeverCommitted(t *testing.T) {
	e := codecEnv(t)
	p := unitProjector(t, e, nil)
	c := &gokaCtx{key: OwnerKey("alice", "o1"), valueErr: ErrStorageClosed}
	c.run(p.guard(p.ownersGroup, p.onOwner), []byte(`{"id":"o1","owner":"alice","version":1}`))
	if c.panicked == nil {
		t.Fatalf("the failure did not stop the partition; dead letters to %v", c.emittedTo)
	}
	if ok, _ := c.state(); ok {
		t.Fatal("the record whose read failed was committed")
	}
}
