package topology_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// load sends commands to every account, one after the other, until
// stopped, checking that each reply is ACCEPTED at the account's next
// version.
type load struct {
	t        *testing.T
	h        *topologytest.Harness
	ids      []string
	accepted atomic.Int64
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	version  map[string]int64
	err      error
}

func startLoad(t *testing.T, h *topologytest.Harness, ids []string) *load {
	l := &load{t: t, h: h, ids: ids, stop: make(chan struct{}), done: make(chan struct{}), version: map[string]int64{}}
	cl := h.Client()
	go func() {
		defer close(l.done)
		for {
			for _, id := range ids {
				select {
				case <-l.stop:
					return
				default:
				}
				l.mu.Lock()
				v := l.version[id]
				l.mu.Unlock()
				typ, body := "Deposit", `{"amount":1}`
				if v == 0 {
					typ, body = "OpenAccount", `{"owner":"O","currency":"EUR"}`
				}
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				rep, err := cl.Send(ctx, cmd("account", id, typ, body))
				cancel()
				if err == nil && (rep.Status != wire.StatusAccepted || rep.Version != v+1) {
					err = fmt.Errorf("%s %s: reply %+v, want ACCEPTED at version %d", typ, id, rep, v+1)
				}
				l.mu.Lock()
				if err != nil {
					l.err = err
					l.mu.Unlock()
					return
				}
				l.version[id] = v + 1
				l.mu.Unlock()
				l.accepted.Add(1)
			}
		}
	}()
	return l
}

// progress waits until n more commands were accepted.
func (l *load) progress(what string, n int64) {
	l.t.Helper()
	target := l.accepted.Load() + n
	eventually(l.t, what, func() bool {
		l.mu.Lock()
		err := l.err
		l.mu.Unlock()
		if err != nil {
			l.t.Fatalf("%s: %v", what, err)
		}
		return l.accepted.Load() >= target
	})
}

func (l *load) end() map[string]int64 {
	l.t.Helper()
	close(l.stop)
	select {
	case <-l.done:
	case <-time.After(120 * time.Second):
		l.t.Fatal("the load did not stop")
	}
	if l.err != nil {
		l.t.Fatal(l.err)
	}
	return l.version
}

// TestRollingUpgradeAndRollback: two workers of the previous build are
// upgraded one after the other to the next release (a fully compatible
// change: fields added with defaults) while commands flow, the upgraded one
// going down once midway (the old one inherits partitions the next release
// wrote to); then one is rolled back to the previous build. Commands keep being answered
// throughout, each exactly once, versions stay contiguous, and the rolled
// back worker reads what the next release wrote (it learns the newer
// writer schemas from the schema topic): no partition is held back, no
// state is rebuilt.
func TestRollingUpgradeAndRollback(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	regOld, regNext := h.Registry, nextRegistry(t)
	dir1, dir2 := t.TempDir(), t.TempDir()
	w1 := h.StartProcessor("w1", dir1)
	w2 := h.StartProcessor("w2", dir2)
	waitSplit(t, w1, w2)
	l := startLoad(t, h, append(idsPerPartition("up"), idsPerPartition("roll")...))
	l.progress("commands on the previous build", 16)

	restart := func(w **topologytest.Running, id, dir string, reg *topology.Registry, other *topologytest.Running) {
		t.Helper()
		for _, x := range []*topologytest.Running{*w, other} {
			if st := x.Stats(); len(x.Unreadable()) != 0 || st.StateRebuilds != 0 || st.UnreadableDeferrals != 0 {
				t.Fatalf("before restarting %s: unreadable %+v, stats %+v: every worker must read both releases' data, not rebuild or hold it back", id, x.Unreadable(), st)
			}
		}
		if err := (*w).Stop(); err != nil {
			t.Fatal(err)
		}
		l.progress("commands while "+id+" is down", 4)
		h.Registry = reg
		*w = h.StartProcessor(id, dir)
		waitSplit(t, *w, other)
		eventually(t, id+" ready", (*w).Ready)
		l.progress("commands after "+id+" came back", 16)
	}
	// The rolling upgrade: one worker at a time, each waited for.
	restart(&w1, "w1", dir1, regNext, w2)
	// Mid-upgrade, the upgraded worker goes down (a crash, a node drain):
	// the old one inherits the partitions the next release wrote to, and
	// keeps answering them.
	restart(&w1, "w1", dir1, regNext, w2)
	restart(&w2, "w2", dir2, regNext, w1)
	l.progress("commands on the next release", 16)
	// The rollback of one worker: it takes partitions the next release
	// wrote.
	restart(&w1, "w1", dir1, regOld, w2)
	for _, w := range []*topologytest.Running{w1, w2} {
		if u := w.Unreadable(); len(u) != 0 {
			t.Fatalf("a worker holds partitions back: %+v", u)
		}
		if st := w.Stats(); st.StateRebuilds != 0 || st.UnreadableDeferrals != 0 {
			t.Fatalf("stats %+v: the rolled back worker must read the next release's data, not rebuild or hold it back", st)
		}
	}
	learned := map[string]bool{}
	for _, c := range regOld.Learned() {
		learned[c.ShortName()] = true
	}
	if !learned["Account"] {
		t.Fatalf("the previous build learned %v; want the next release's Account (its snapshots' state)", learned)
	}
	version := l.end()

	// Every command answered once; every aggregate's versions contiguous;
	// both builds wrote deposits.
	h.Registry = regNext
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
	for id, v := range version {
		if n := int64(len(versions["account/"+id])); n != v {
			t.Fatalf("%s has %d events, %d commands were accepted", id, n, v)
		}
	}
	replies := map[string]int{}
	for _, r := range h.ReadTopic("command_reply") {
		for _, hd := range r.Headers {
			if hd.Key == wire.HeaderCommandID {
				replies[string(hd.Value)]++
			}
		}
	}
	var total int64
	for _, v := range version {
		total += v
	}
	if int64(len(replies)) != total {
		t.Fatalf("%d commands answered, %d sent", len(replies), total)
	}
	for id, n := range replies {
		if n != 1 {
			t.Fatalf("command %s answered %d times", id, n)
		}
	}
	memos := map[bool]int{}
	for _, r := range h.ReadTopic("events") {
		_, evs, err := regNext.DecodeEvents(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := evs[0].(accountnextDeposit); ok {
			memos[d.Memo != ""]++
		}
	}
	if memos[true] == 0 || memos[false] == 0 {
		t.Fatalf("deposits with a memo (next release) and without (previous build): %v; want both", memos)
	}
}
