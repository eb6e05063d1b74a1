package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/shred"
)

// printHistory shows the demo account's history and its state at an
// earlier version, as `kcqrs history` prints them (docs/history.md).
func printHistory(ctx context.Context, r *history.Reader, opsAddr, acc string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fmt.Printf("\nhistory (kcqrs history account %s; GET http://%s/v1/streams/account/%s):\n", acc, opsAddr, acc)
	evs, err := r.History(ctx, "account", acc, 1, 0)
	if err != nil {
		fmt.Printf("  %v\n", err)
		return
	}
	var line []string
	for _, e := range evs {
		line = append(line, fmt.Sprintf("v%d %s", e.Version, e.EventType))
	}
	fmt.Printf("  %s\n", strings.Join(line, ", "))
	if len(evs) < 2 {
		return
	}
	v, err := r.View(ctx, "account", acc, history.At{Version: 2})
	for errors.Is(err, shred.ErrNoKey) && ctx.Err() == nil {
		// The reader's key follower has not read the account's data key
		// yet (it was written moments ago): the endpoint answers 503 with
		// Retry-After in this case; the demo retries as a client would.
		time.Sleep(100 * time.Millisecond)
		v, err = r.View(ctx, "account", acc, history.At{Version: 2})
	}
	if err != nil {
		fmt.Printf("  at version 2: %v\n", err)
		return
	}
	fmt.Printf("  --at-version 2 -> %s\n", v.State)
}
