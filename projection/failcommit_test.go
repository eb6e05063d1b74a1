package projection

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/lovoo/goka"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/schemas"
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

func (c *gokaCtx) Key() string                         { return c.key }
func (c *gokaCtx) Partition() int32                    { return c.partition }
func (c *gokaCtx) Offset() int64                       { return c.offset }
func (c *gokaCtx) Topic() goka.Stream                  { return "events" }
func (c *gokaCtx) Headers() goka.Headers               { return goka.Headers{} }
func (c *gokaCtx) Value() any                          { return c.value }
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

// unitEnv encodes events without a broker.
func unitEnv(t *testing.T) *env {
	envs, err := schemas.LoadEnvelopes()
	if err != nil {
		t.Fatal(err)
	}
	evc, err := envs.Codec("kcqrs.Event")
	if err != nil {
		t.Fatal(err)
	}
	acc, err := schemas.LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, reg: testRegistry(t), evCodec: evc, acc: acc}
}

// unitProjector is a projector whose accounts-group writer has one
// partition and no client: a batch with entries fails ("no store"), a
// batch of commits only succeeds.
func unitProjector(t *testing.T, e *env, personal *Personal) *Projector {
	p, err := New(Config{Brokers: []string{"127.0.0.1:1"}, StateDir: t.TempDir(), Registry: e.reg,
		Logger: testLogger(), Personal: personal})
	if err != nil {
		t.Fatal(err)
	}
	p.w = newTableWriter(nil, &storeSet{}, p.cfg.Names, 1, &p.c.written, &p.c.forwarded)
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
	e := unitEnv(t)
	mk := make([]byte, shred.KeyLen)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}
	master, err := shred.NewMasterKey(mk)
	if err != nil {
		t.Fatal(err)
	}
	owners, err := shred.NewBlindIndex(master, OwnerIndexPurpose)
	if err != nil {
		t.Fatal(err)
	}
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
