package topology_test

import (
	"testing"
	"time"
)

// TestStopWhileStartingIsNotAFailure: a stop (SIGTERM, a cancelled context)
// that lands while the worker is still starting (listing topics, checking
// permissions, loading keys, joining) ends Run without an error, as a stop
// after the start does. Run returned "check permissions: context canceled".
func TestStopWhileStartingIsNotAFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for i, after := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond, 100 * time.Millisecond} {
		w := h.StartProcessor("s"+string(rune('a'+i)), "")
		time.Sleep(after)
		if err := w.Stop(); err != nil {
			t.Fatalf("stopped %v after its start: Run returned %v, want nil", after, err)
		}
	}
}
