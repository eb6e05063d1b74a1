package topologytest

import (
	"context"
	"testing"
)

// RunUntilEnd runs run (a saga's, a projector's Run) in a goroutine until
// the test ends; then it cancels run's context and waits for it to
// return. An error it returns fails the test, prefixed with name.
func RunUntilEnd(t testing.TB, name string, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
}
