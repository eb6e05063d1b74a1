package client

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/wire"
)

// echo is a stand-in processor: it answers every command on the command
// topic with an ACCEPTED reply carrying the command's correlation id.
func echo(t testing.TB, brokers []string) {
	t.Helper()
	env, err := schemas.LoadEnvelopes()
	if err != nil {
		t.Fatal(err)
	}
	codec, err := env.Codec("kcqrs.Reply")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("cmds"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				var corr, id string
				for _, h := range r.Headers {
					switch h.Key {
					case wire.HeaderCorrelationID:
						corr = string(h.Value)
					case wire.HeaderCommandID:
						id = string(h.Value)
					}
				}
				v, err := codec.Encode(wire.Reply{CommandID: id, Status: wire.StatusAccepted, Version: 1})
				if err != nil {
					t.Error(err)
					return
				}
				cl.Produce(ctx, &kgo.Record{Topic: "replies", Value: v, Headers: []kgo.RecordHeader{
					{Key: wire.HeaderCorrelationID, Value: []byte(corr)},
					{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeAvro)},
				}}, nil)
			})
		}
	}()
}

// TestSendAsyncCallsBackExactlyOnce: a reply, an expired context and Close
// each end a SendAsync with one call of its callback, the same results Send
// gives; many commands in flight need no goroutine each.
func TestSendAsyncCallsBackExactlyOnce(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "cmds", "replies", "silent", "silent-replies"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	echo(t, brokers)
	ctx := context.Background()
	cl, err := New(ctx, Config{Brokers: brokers, CommandTopic: "cmds", ReplyTopic: "replies"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// Replies: every callback once, with the trace filled in.
	const n = 200
	var calls atomic.Int64
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		cl.SendAsync(ctx, Command{AggregateType: "a", AggregateID: "x", Type: "T", JSON: []byte("{}")}, func(rep wire.Reply, tr Trace, err error) {
			calls.Add(1)
			if err == nil && (rep.Status != wire.StatusAccepted || tr.Sent.IsZero() || tr.Polled.IsZero() || tr.Received.Before(tr.Polled)) {
				err = errors.New("bad reply or trace")
			}
			errs <- err
		})
	}
	for i := 0; i < n; i++ {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d callbacks after 30s", i, n)
		}
	}

	// No processor answers on "silent": the context ends the wait.
	quiet, err := New(ctx, Config{Brokers: brokers, CommandTopic: "silent", ReplyTopic: "silent-replies"})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := quiet.Send(short, Command{AggregateType: "a", AggregateID: "x", Type: "T", JSON: []byte("{}")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired wait: %v", err)
	}
	// Close ends a pending wait with ErrClosed.
	closed := make(chan error, 2)
	quiet.SendAsync(ctx, Command{AggregateType: "a", AggregateID: "y", Type: "T", JSON: []byte("{}")}, func(_ wire.Reply, _ Trace, err error) { closed <- err })
	time.Sleep(100 * time.Millisecond) // let the produce go out; the result is the same either way
	quiet.Close()
	select {
	case err := <-closed:
		if !errors.Is(err, ErrClosed) && !errors.Is(err, kgo.ErrClientClosed) {
			t.Fatalf("after Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no callback after Close")
	}
	time.Sleep(100 * time.Millisecond)
	if len(closed) != 0 {
		t.Fatal("callback called twice")
	}
	if calls.Load() != n {
		t.Fatalf("%d callbacks for %d commands", calls.Load(), n)
	}
}

// TestOneContextManyCommands: commands sharing one context share its
// watch; its end ends every one of them once, and a context's watch is
// gone once its last command was answered.
func TestOneContextManyCommands(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "cmds", "replies", "silent", "silent-replies"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	echo(t, brokers)
	bg := context.Background()

	// Answered: the shared context's group goes away with the last reply.
	cl, err := New(bg, Config{Brokers: brokers, CommandTopic: "cmds", ReplyTopic: "replies"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	shared, cancelShared := context.WithCancel(bg)
	defer cancelShared()
	const n = 100
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		cl.SendAsync(shared, Command{AggregateType: "a", AggregateID: "x", Type: "T", JSON: []byte("{}")}, func(rep wire.Reply, _ Trace, err error) {
			if err == nil && rep.Status != wire.StatusAccepted {
				err = errors.New("not accepted")
			}
			errs <- err
		})
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	cl.mu.Lock()
	groups, waiting := len(cl.groups), len(cl.waiters)
	cl.mu.Unlock()
	if groups != 0 || waiting != 0 {
		t.Fatalf("after every reply: %d context groups, %d waiters", groups, waiting)
	}

	// Unanswered: cancelling the shared context ends each wait once, with
	// the context's error; another context's wait goes on.
	quiet, err := New(bg, Config{Brokers: brokers, CommandTopic: "silent", ReplyTopic: "silent-replies"})
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	ctx1, cancel1 := context.WithCancel(bg)
	ctx2, cancel2 := context.WithCancel(bg)
	defer cancel2()
	var calls1, calls2 atomic.Int64
	ended := make(chan error, n)
	for i := 0; i < n; i++ {
		quiet.SendAsync(ctx1, Command{AggregateType: "a", AggregateID: "x", Type: "T", JSON: []byte("{}")}, func(_ wire.Reply, _ Trace, err error) {
			calls1.Add(1)
			ended <- err
		})
	}
	quiet.SendAsync(ctx2, Command{AggregateType: "a", AggregateID: "y", Type: "T", JSON: []byte("{}")}, func(_ wire.Reply, _ Trace, err error) {
		calls2.Add(1)
		t.Logf("the other context's command: %v", err)
	})
	// Let the produces finish first: franz-go fails a partition's
	// buffered records together when one's context ends.
	time.Sleep(300 * time.Millisecond)
	cancel1()
	for i := 0; i < n; i++ {
		select {
		case err := <-ended:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("wait %d ended with %v", i, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d waits ended after 30s", i, n)
		}
	}
	time.Sleep(100 * time.Millisecond) // a second call would come now
	if calls1.Load() != n || calls2.Load() != 0 {
		t.Fatalf("callbacks: %d for %d cancelled commands, %d for the one still waiting", calls1.Load(), n, calls2.Load())
	}
	quiet.mu.Lock()
	groups, waiting = len(quiet.groups), len(quiet.waiters)
	quiet.mu.Unlock()
	if groups != 1 || waiting != 1 {
		t.Fatalf("after the cancel: %d context groups, %d waiters; want 1 and 1", groups, waiting)
	}
}
