package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// TestReadModelsFromRealProcessor runs the real processor (transactional
// events, commit markers, the demo's aggregates) and checks the read models
// against the fold of its events topic, the catch-up check across its commit
// markers, and read-your-writes with the version of a reply.
func TestReadModelsFromRealProcessor(t *testing.T) {
	h := topologytest.New(t, testRegistry(t), testPartitions)
	h.StartProcessor("p-0", "")
	rng := rand.New(rand.NewPCG(5, 5))
	var last wire.Reply
	for i := 0; i < 12; i++ {
		id := fmt.Sprintf("acc-%02d", i)
		h.Send(client.Command{AggregateType: "account", AggregateID: id, Type: "OpenAccount",
			JSON: fmt.Appendf(nil, `{"owner":"owner-%d","currency":"%s"}`, i%3, []string{"EUR", "USD"}[i%2])})
		for j := 0; j < 5; j++ {
			typ := "Deposit"
			if rng.IntN(3) == 0 {
				typ = "Withdraw" // sometimes rejected: no event, no version
			}
			last = h.Send(client.Command{AggregateType: "account", AggregateID: id, Type: typ,
				JSON: fmt.Appendf(nil, `{"amount":%d}`, rng.IntN(500)+1)})
		}
	}
	h.Send(client.Command{AggregateType: "folder", AggregateID: "f-1", Type: "CreateFolder", JSON: []byte(`{"name":"x"}`)})
	events := len(h.ReadTopic("events"))

	dir := t.TempDir()
	cfg := Config{Brokers: h.Brokers, StateDir: dir, Registry: h.Registry, Logger: testLogger(), CommitInterval: 50 * time.Millisecond}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	s, err := NewServer(context.Background(), ServerConfig{Projection: cfg})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(ctx) }()

	// Read-your-writes with the version the last reply carried.
	var a Account
	path := fmt.Sprintf("/v1/accounts/%s?min_version=%d&wait=30s", last.AggregateID, last.Version)
	if code := getJSON(s.Handler(), path, &a); code != 200 || a.Version < last.Version {
		t.Fatalf("read-your-writes: %d %+v, reply had version %d", code, a, last.Version)
	}
	f := foldTopic(t, h.Brokers, events)
	eventually(t, "read models equal the fold", func() (bool, string) { return f.matches(s.Handler()) })

	cl, err := kgo.NewClient(kgo.SeedBrokers(h.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	eventually(t, "caught up across the commit markers", func() (bool, string) {
		ok, pr, err := CaughtUp(context.Background(), cl, adm, cfg.Names.withDefaults(), "events")
		b, _ := json.Marshal(pr)
		return ok, fmt.Sprintf("%v %s", err, b)
	})
	// The markers are there: the raw lag is not zero, yet nothing is pending.
	pr, err := GroupProgress(context.Background(), adm, "kcqrs-proj-accounts-v1", "events")
	if err != nil {
		t.Fatal(err)
	}
	var lag int64
	for _, p := range pr {
		lag += p.Lag()
	}
	t.Logf("raw lag of the caught-up group (commit markers): %d", lag)
}

// TestPendingData: commit markers and aborted records are not data; a
// committed record is.
func TestPendingData(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	txn, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.TransactionalID("t-pending"),
		kgo.DefaultProduceTopic("events"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	produceTxn := func(commit bool, n int) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if err := txn.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	produceTxn(true, 3)  // offsets 0-2, marker 3
	produceTxn(false, 2) // aborted 4-5, marker 6
	check := func(from int64, want bool) {
		t.Helper()
		got, err := PendingData(ctx, e.cl, e.adm, "events", map[int32]int64{0: from})
		if err != nil || got != want {
			t.Fatalf("PendingData from %d = %v, %v; want %v", from, got, err, want)
		}
	}
	check(0, true)
	check(2, true)
	check(3, false) // only a marker, aborted records and a marker left
	check(5, false)
	produceTxn(true, 1) // offset 7
	check(3, true)
	check(8, false)
}
