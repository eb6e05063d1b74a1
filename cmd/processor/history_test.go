package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/wire"
)

// TestHistoryEndpoints: the processor binary (--history, the default)
// serves an account's events and its state at a version on --http-addr,
// and --history=false serves neither.
func TestHistoryEndpoints(t *testing.T) {
	c, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, on := range []bool{true, false} {
		args := []string{"--brokers", strings.Join(c.ListenAddrs(), ","), "--state-dir", t.TempDir(), "--instance-id", "h0",
			"--partitions", "2", "--http-addr", "127.0.0.1:0", "--transfers=false"}
		if !on {
			args = append(args, "--history=false")
		}
		st, _, err := load(args, env(), false)
		if err != nil {
			t.Fatal(err)
		}
		reg, err := examples.Registry()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		addrc := make(chan string, 1)
		done := make(chan error, 1)
		go func() { done <- run(ctx, st, reg, io.Discard, func(a string) { addrc <- a }) }()
		var base string
		select {
		case a := <-addrc:
			base = "http://" + a
		case err := <-done:
			t.Fatal(err)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
		cl, err := client.New(cctx, client.Config{Brokers: st.cfg.Brokers})
		for err != nil && cctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
			cl, err = client.New(cctx, client.Config{Brokers: st.cfg.Brokers})
		}
		if err != nil {
			t.Fatal(err)
		}
		id := "hist-" + strings.Repeat("x", len(base)%3)
		if on {
			for i, c := range []client.Command{
				{AggregateType: "account", AggregateID: id, Type: "OpenAccount", JSON: []byte(`{"owner":"Ann","currency":"EUR"}`)},
				{AggregateType: "account", AggregateID: id, Type: "Deposit", JSON: []byte(`{"amount":42}`)},
			} {
				rep, err := cl.Send(cctx, c)
				if err != nil || rep.Status != wire.StatusAccepted || rep.Version != int64(i+1) {
					t.Fatalf("%s: %+v %v", c.Type, rep, err)
				}
			}
		}
		// 503 while the index has not started on the partition yet.
		var code, state int
		var body, sbody string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			code, body = scrape(t, base+"/v1/streams/account/"+id)
			state, sbody = scrape(t, base+"/v1/aggregates/account/"+id+"?at_version=1")
			if (code != 503 && state != 503) || time.Now().After(deadline) {
				break
			}
		}
		cl.Close()
		ccancel()
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Error(err) // a stop during start-up is canceled, not a failure
		}
		if on && (code != 200 || !strings.Contains(body, `"eventType":"MoneyDeposited"`) || state != 200 || !strings.Contains(sbody, `"version":1`)) {
			t.Fatalf("with --history: stream %d %s; state %d %s", code, body, state, sbody)
		}
		if !on && (code != 404 || state != 404) {
			t.Fatalf("with --history=false: stream %d, state %d; want 404 (not served)", code, state)
		}
	}
}
