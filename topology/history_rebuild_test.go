package topology_test

import (
	"context"
	"fmt"
	"io/fs"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// TestSchemaRebuildReadsOnlyItsAggregate: the rebuild of a state whose
// snapshot schema is gone reads that aggregate's events through the history
// index (Config.History), not its whole partition. The partition holds
// hundreds of other aggregates' events, each transaction in a batch of its
// own; with one batch per fetch (FetchMaxPartitionBytes 1), a scan costs a
// fetch per transaction. The same rebuild without an index (as on main)
// is measured beside it, so the bound is shown to bite.
func TestSchemaRebuildReadsOnlyItsAggregate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded() // counts fetches with a kfake control
	p1 := h.StartProcessor("v1", "")
	const others = 150
	part := topology.PartitionFor([]byte("a2"), 4)
	ids := []string{}
	for i := 0; len(ids) < others+1; i++ {
		id := fmt.Sprintf("o-%d", i)
		if topology.PartitionFor([]byte(id), 4) == part {
			ids = append(ids, id)
		}
	}
	a3 := ids[others] // a second aggregate to rebuild, without the index
	for _, id := range []string{"a2", a3} {
		wantStatus(t, h.Send(cmd("account", id, "OpenAccount", `{"owner":"Bob","currency":"USD"}`)), wire.StatusAccepted, 1)
		wantStatus(t, h.Send(cmd("account", id, "Deposit", `{"amount":7}`)), wire.StatusAccepted, 2)
	}
	for _, id := range ids[:others] {
		wantStatus(t, h.Send(cmd("account", id, "OpenAccount", `{"owner":"X","currency":"EUR"}`)), wire.StatusAccepted, 1)
	}
	if err := p1.Stop(); err != nil {
		t.Fatal(err)
	}

	// Index the events topic, then stop the indexer: from here on, every
	// fetch of the events topic is the rebuild's.
	reader := historyReader(t, h, indexEvents(t, h))

	var fetches atomic.Int64
	events := h.Topic("events")
	id := h.Cluster.TopicInfo(events).TopicID
	h.Cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		h.Cluster.KeepControl()
		for _, rt := range req.(*kmsg.FetchRequest).Topics {
			if rt.Topic == events || rt.TopicID == id {
				fetches.Add(1)
			}
		}
		return nil, nil, false
	})

	reg3 := lossyRegistryV2(t)
	h.Registry = reg3
	small := func(c *topology.Config) { c.FetchMaxPartitionBytes = 1 }

	p3 := h.StartProcessor("v2-history", "", small, func(c *topology.Config) { c.History = reader; c.SchemaTopic = "-" })
	wantStatus(t, h.Send(cmd("account", "a2", "Withdraw", `{"amount":2}`)), wire.StatusAccepted, 3)
	if n := p3.Stats().StateRebuilds; n != 1 {
		t.Fatalf("StateRebuilds = %d, want 1", n)
	}
	if err := p3.Stop(); err != nil {
		t.Fatal(err)
	}
	withIndex := fetches.Swap(0)

	p4 := h.StartProcessor("v2-scan", "", small, func(c *topology.Config) { c.SchemaTopic = "-" })
	wantStatus(t, h.Send(cmd("account", a3, "Withdraw", `{"amount":2}`)), wire.StatusAccepted, 3)
	if n := p4.Stats().StateRebuilds; n != 1 {
		t.Fatalf("StateRebuilds = %d, want 1", n)
	}
	if err := p4.Stop(); err != nil {
		t.Fatal(err)
	}
	scan := fetches.Load()
	t.Logf("events fetches: %d with the index, %d scanning the partition", withIndex, scan)
	if withIndex > 10 {
		t.Fatalf("the rebuild with the history index fetched the events topic %d times; it should read only a2's 2 events (scan: %d)", withIndex, scan)
	}
	if scan < others/2 {
		t.Fatalf("the scan fetched only %d times: the test does not measure what it claims", scan)
	}
	want := Account{Status: account.StatusOpen, Owner: "Bob", Currency: "USD", Balance: 5, Channel: "unknown"}
	for _, k := range []string{"a2", a3} {
		if got := stateOf(t, h, reg3, k); got != want {
			t.Fatalf("%s after its rebuild: %+v, want %+v", k, got, want)
		}
	}
}

// lossyRegistryV2 is version 2 of the account without the state schema
// version 1 writes: version 1 snapshots are unreadable.
func lossyRegistryV2(t *testing.T) *topology.Registry {
	t.Helper()
	lossy := fstest.MapFS{}
	if err := fs.WalkDir(accountV2Dir, "accountv2", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "accountv2/history/Account.v3.avsc" {
			return err
		}
		data, err := fs.ReadFile(accountV2Dir, p)
		lossy[p] = &fstest.MapFile{Data: data}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return registryV2(t, lossy)
}

// indexEvents indexes h's events topic as far as it goes now (one
// CatchUp; no indexer keeps running) into an index closed when the test
// ends.
func indexEvents(t *testing.T, h *topologytest.Harness) *history.Index {
	t.Helper()
	idx, err := history.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idx.Close() })
	ix, err := history.NewIndexer(history.IndexerConfig{Index: idx, Topic: h.Topic("events"), ClientOpts: []kgo.Opt{kgo.SeedBrokers(h.Brokers...)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ix.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	return idx
}

// historyReader reads h's events through idx, decoding with h's registry
// as it is now; its client is closed when the test ends.
func historyReader(t *testing.T, h *topologytest.Harness, idx *history.Index) *history.Reader {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	reader, err := history.NewReader(history.ReaderConfig{Index: idx, Client: cl, Registry: h.Registry, Topic: h.Topic("events")})
	if err != nil {
		t.Fatal(err)
	}
	return reader
}
