package topology_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// A restore whose fetches end on their byte bounds leaves the snapshots of
// an aborted transaction out. The embedded broker omitted the aborted
// transactions of a response that ended on the response bound, and a
// restore asking for response bound = partition bound was handed the
// aborted snapshot as committed (internal/logread works around it).
func TestRestoreWithSmallFetchesLeavesAbortedSnapshotsOut(t *testing.T) {
	t.Parallel()
	small := func(c *topology.Config) { c.FetchMaxBytes, c.FetchMaxPartitionBytes = 64, 64 }
	h, w := embeddedWorker(t, small)
	openAccountID(t, h, "rz")
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	p := topology.PartitionFor([]byte("rz"), partitions)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	zombie := txnClient(t, h, "zombie-small-fetch")
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceJunk(ctx, t, h, zombie, p, "account/rz")
	if err := zombie.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	// A fresh state directory: the whole changelog partition is restored,
	// one batch per fetch.
	h.StartProcessor("w1", "", small)
	wantStatus(t, h.Send(cmd("account", "rz", "Deposit", `{"amount":3}`)), wire.StatusAccepted, 2)
}
