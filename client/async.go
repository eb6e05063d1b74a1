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
type waiter struct {
	once atomic.Bool
	done func(wire.Reply, Trace, error)

	mu    sync.Mutex
	stop  func() bool // stops the context watch
	tr    Trace
	acked bool
	held  *wire.Reply // a reply that came before the ack
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

// finish ends the wait with a reply (polled then) or an error.
func (w *waiter) finish(rep wire.Reply, polled time.Time, err error) {
	if !w.once.CompareAndSwap(false, true) {
		return
	}
	w.mu.Lock()
	if w.stop != nil {
		w.stop()
	}
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
	if cmd.ID == "" {
		cmd.ID = NewID()
	}
	rec, corr, err := c.record(cmd)
	if err != nil {
		done(wire.Reply{}, Trace{}, err)
		return
	}
	w := &waiter{done: done}
	c.mu.Lock()
	if c.waiters == nil {
		c.mu.Unlock()
		done(wire.Reply{}, Trace{}, ErrClosed)
		return
	}
	c.waiters[corr] = w
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		if c.waiters != nil {
			delete(c.waiters, corr)
		}
		c.mu.Unlock()
	}
	stop := context.AfterFunc(ctx, func() {
		forget()
		w.finish(wire.Reply{}, time.Time{}, fmt.Errorf("client: waiting for the reply to %s (command id %s): %w", cmd.Type, cmd.ID, ctx.Err()))
	})
	w.mu.Lock()
	w.stop = stop
	w.mu.Unlock()
	c.produce.Produce(ctx, rec, func(r *kgo.Record, err error) {
		w.ack(r, err)
		if err != nil {
			forget()
			w.finish(wire.Reply{}, time.Time{}, fmt.Errorf("client: send %s to topic %q: %w", cmd.Type, r.Topic, err))
		}
	})
}
