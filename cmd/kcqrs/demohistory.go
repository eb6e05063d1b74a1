package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kcqrs/kcqrs/history"
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
	if err != nil {
		fmt.Printf("  at version 2: %v\n", err)
		return
	}
	fmt.Printf("  --at-version 2 -> %s\n", v.State)
}
