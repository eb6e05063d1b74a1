package topology_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// The fetch bounds must reach both the command consumer and the changelog
// restore: they are what keeps a worker's memory bounded while it consumes a
// backlog.
func TestFetchBoundsReachEveryClient(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	const maxBytes, maxPartBytes = 123457, 65537
	const maxBytesOfOnePartitionFetch = maxBytes // a one-partition fetch counts as within the bounds
	// Both workers get the bounds: a fetch of the first one may still be
	// parked in the broker when the second starts.
	bounds := func(c *topology.Config) { c.FetchMaxBytes, c.FetchMaxPartitionBytes = maxBytes, maxPartBytes }
	first := h.StartProcessor("w0", "", bounds)
	for i := range 8 {
		wantStatus(t, h.Send(cmd("account", fmt.Sprintf("b%d", i), "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)
	}
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}

	commands, changelog := h.Topic("commands"), h.Topic("snapshots-changelog")
	listed, err := h.Admin().ListTopics(context.Background(), commands, changelog)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen = map[string][]string{} // topic -> bounds of each fetch
	)
	h.Cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		h.Cluster.KeepControl()
		f := req.(*kmsg.FetchRequest)
		mu.Lock()
		defer mu.Unlock()
		for _, tp := range f.Topics {
			for _, name := range []string{commands, changelog} {
				if tp.Topic != name && tp.TopicID != listed[name].ID {
					continue
				}
				for _, p := range tp.Partitions {
					maxBytes := f.MaxBytes
					if name == changelog && maxBytes == math.MaxInt32 && len(f.Topics) == 1 && len(tp.Partitions) == 1 {
						// A restore fetches one partition at a time and bounds it by
						// the partition bound alone (internal/logread: kfake leaves the
						// aborted transactions out of a response ended on its own
						// bound); such a response is bounded all the same.
						maxBytes = maxBytesOfOnePartitionFetch
					}
					seen[name] = append(seen[name], fmt.Sprintf("%d/%d", maxBytes, p.PartitionMaxBytes))
				}
			}
		}
		return nil, nil, false
	})
	// A fresh state directory: the stores are restored from the changelog.
	fresh := h.StartProcessor("w0", "", bounds)
	for i := range 8 {
		wantStatus(t, h.Send(cmd("account", fmt.Sprintf("b%d", i), "Deposit", `{"amount":5}`)), wire.StatusAccepted, 2)
	}
	if err := fresh.Stop(); err != nil {
		t.Fatal(err)
	}
	restored := 0
	for _, rep := range fresh.Restores() {
		restored += rep.Records
	}
	if restored == 0 {
		t.Fatal("nothing was restored from the changelog")
	}
	want := fmt.Sprintf("%d/%d", maxBytes, maxPartBytes)
	mu.Lock()
	defer mu.Unlock()
	for _, name := range []string{commands, changelog} {
		if len(seen[name]) == 0 {
			t.Fatalf("no fetch of %s seen", name)
		}
		for _, got := range seen[name] {
			if got != want {
				t.Fatalf("a fetch of %s asked for %s bytes (max/partition max), want %s", name, got, want)
			}
		}
	}
}
