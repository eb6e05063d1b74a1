package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/wire"
)

// waiter is one command waiting for its reply. Its callback runs exactly
// once, for whichever comes first: the reply, a failed produce, the end of
// its context, Close. A reply polled before the produce's acknowledgement
// (the ack and the fetch travel apart) is held until the ack, so that the
// Trace names the command record.
//
// The command record and its headers live in the waiter: one allocation
// for the three (their bytes are a second one, see fill).
type waiter struct {
	c    *Client
	once atomic.Bool
	done func(wire.Reply, Trace, error)
	// seq is the waiter's key in Client.waiters and the counter of its
	// correlation id; cmdType and cmdID name it in errors.
	seq            uint64
	cmdType, cmdID string
	rec            kgo.Record
	hdrs           [8]kgo.RecordHeader

	// The waiters of one context, guarded by Client.mu (see ctxGroup).
	group      *ctxGroup
	prev, next *waiter

	mu    sync.Mutex
	tr    Trace
	acked bool
	held  *wire.Reply // a reply that came before the ack
}

// ctxGroup is the waiters in flight under one context (one Done channel):
// one context.AfterFunc watches the context for all of them, instead of one
// per command (a registration with the parent context and a closure each).
// It lives while it has waiters; guarded by Client.mu.
type ctxGroup struct {
	done  <-chan struct{}
	head  *waiter
	n     int
	stop  func() bool
	ended bool // its AfterFunc ran
}

// join adds w to the group of ctx, creating the group (and its AfterFunc)
// when ctx has none. c.mu is held. A context that can never end needs none.
func (c *Client) join(ctx context.Context, w *waiter) {
	d := ctx.Done()
	if d == nil {
		return
	}
	g := c.groups[d]
	if g == nil {
		g = &ctxGroup{done: d}
		c.groups[d] = g
		// f runs on its own goroutine (even when ctx has ended already),
		// so creating it under c.mu is safe.
		g.stop = context.AfterFunc(ctx, func() { c.expire(ctx, g) })
	}
	w.group, w.next = g, g.head
	if g.head != nil {
		g.head.prev = w
	}
	g.head = w
	g.n++
}

// leave removes w from its group; the last one out stops the group's
// AfterFunc. c.mu is held.
func (c *Client) leave(w *waiter) {
	g := w.group
	if g == nil {
		return
	}
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		g.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	}
	w.group, w.prev, w.next = nil, nil, nil
	g.n--
	if g.n == 0 && !g.ended {
		g.stop()
		if c.groups[g.done] == g {
			delete(c.groups, g.done)
		}
	}
}

// expire ends the wait of every waiter of g: its context ended.
func (c *Client) expire(ctx context.Context, g *ctxGroup) {
	c.mu.Lock()
	g.ended = true
	if c.groups[g.done] == g {
		delete(c.groups, g.done)
	}
	var ended []*waiter
	for w := g.head; w != nil; w = w.next {
		ended = append(ended, w)
		if c.waiters != nil {
			delete(c.waiters, w.seq)
		}
	}
	for _, w := range ended {
		w.group, w.prev, w.next = nil, nil, nil
	}
	g.head, g.n = nil, 0
	c.mu.Unlock()
	for _, w := range ended {
		w.finish(wire.Reply{}, time.Time{}, fmt.Errorf("client: waiting for the reply to %s (command id %s): %w", w.cmdType, w.cmdID, ctx.Err()))
	}
}

// forget stops waiting for w's reply (its produce failed).
func (c *Client) forget(w *waiter) {
	c.mu.Lock()
	if c.waiters != nil && c.waiters[w.seq] == w {
		delete(c.waiters, w.seq)
		c.leave(w)
	}
	c.mu.Unlock()
}

// produced is the produce's promise.
func (w *waiter) produced(r *kgo.Record, err error) {
	w.ack(r, err)
	if err != nil {
		w.c.forget(w)
		w.finish(wire.Reply{}, time.Time{}, fmt.Errorf("client: send %s to topic %q: %w", w.cmdType, r.Topic, err))
	}
}

// acked: the produce finished (err is its error).
func (w *waiter) ack(r *kgo.Record, err error) {
	w.mu.Lock()
	w.acked = true
	if err == nil {
		w.tr.Partition, w.tr.Offset, w.tr.Sent = r.Partition, r.Offset, time.Now()
		if w.held != nil && w.tr.Polled.Before(w.tr.Sent) {
			// The reply was polled before this callback ran: the broker
			// had acknowledged the record by then (there is a reply), so
			// the poll is the latest the acknowledgement can have been.
			w.tr.Sent = w.tr.Polled
		}
	}
	held, tr := w.held, w.tr
	w.mu.Unlock()
	if held != nil {
		// The reply is the truth even when the ack failed: the record
		// was written, or there would be no reply.
		tr.Received = time.Now()
		w.done(*held, tr, nil)
	}
}

// finish ends the wait with a reply (polled then) or an error. The caller
// has taken w out of Client.waiters (and so out of its context's group).
func (w *waiter) finish(rep wire.Reply, polled time.Time, err error) {
	if !w.once.CompareAndSwap(false, true) {
		return
	}
	w.mu.Lock()
	w.tr.Polled = polled
	if err == nil && !w.acked {
		w.held = &rep
		w.mu.Unlock()
		return
	}
	tr := w.tr
	w.mu.Unlock()
	if err == nil {
		tr.Received = time.Now()
	}
	w.done(rep, tr, err)
}

// SendAsync produces cmd and returns at once; done is called exactly once,
// with the reply or the error Send would return (the produce failed, ctx
// ended first, the client was closed). done runs on one of the client's
// goroutines and must not block. Unlike Send it needs no goroutine per
// command in flight, so an open-loop sender can keep many commands in
// flight cheaply (kcqrs-bench's latency load: a goroutine per command made
// the sender, not the processor, the bottleneck when replies fell behind).
func (c *Client) SendAsync(ctx context.Context, cmd Command, done func(wire.Reply, Trace, error)) {
	w := &waiter{c: c, done: done}
	if err := c.fill(w, cmd); err != nil {
		done(wire.Reply{}, Trace{}, err)
		return
	}
	c.mu.Lock()
	if c.waiters == nil {
		c.mu.Unlock()
		done(wire.Reply{}, Trace{}, ErrClosed)
		return
	}
	c.waiters[w.seq] = w
	c.join(ctx, w)
	c.mu.Unlock()
	c.produce.Produce(ctx, &w.rec, w.produced)
}
