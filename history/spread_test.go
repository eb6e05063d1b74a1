package history_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// fetchCounter counts the fetch requests a client writes.
type fetchCounter struct{ n atomic.Int64 }

func (f *fetchCounter) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == 1 && err == nil {
		f.n.Add(1)
	}
}

// TestScatteredFetchesSpreadOverClients: the fetches of one History call
// go over every client the reader is given (a broker serves one request per
// connection at a time, so fetches in flight on one client wait for each
// other), and the answer is the same.
func TestScatteredFetchesSpreadOverClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.h.StartProcessor("p1", "")
	e.send(cmd("account", "spread", "OpenAccount", `{"owner":"S","currency":"EUR"}`), wire.StatusAccepted)
	for i := range 11 {
		// One command at a time: each event in a transaction (a batch) of its own.
		e.send(cmd("account", "spread", "Deposit", fmt.Sprintf(`{"amount":%d}`, i+1)), wire.StatusAccepted)
	}
	e.openIndex(t.TempDir())
	want := e.scan()
	e.indexed(want)
	var counters []*fetchCounter
	var more []*kgo.Client
	for range 3 {
		fc := &fetchCounter{}
		cl, err := kgo.NewClient(append(e.clientOpts(), kgo.WithHooks(fc))...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		counters, more = append(counters, fc), append(more, cl)
	}
	cl, err := kgo.NewClient(e.clientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r, err := history.NewReader(history.ReaderConfig{Index: e.idx, Client: cl, FetchClients: more, Registry: e.h.Registry, Topic: e.h.Topic("events"), Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.History(context.Background(), "account", "spread", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !sameEvents(got, want["account/spread"]) || len(got) != 12 {
		t.Fatalf("history: %s", describe(got))
	}
	for i, fc := range counters {
		if fc.n.Load() == 0 {
			t.Errorf("fetch client %d issued no fetch", i)
		}
	}
}
