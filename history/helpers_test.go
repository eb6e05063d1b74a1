package history_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/internal/examples/examplestest"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

type env struct {
	t   *testing.T
	h   *topologytest.Harness
	idx *history.Index
	dir string
	r   *history.Reader
	ix  *history.Indexer
	// stop ends the running indexer and waits for it.
	stop func()
}

func newEnv(t *testing.T, partitions int32) *env {
	t.Helper()
	h := examplestest.Harness(t, partitions)
	return &env{t: t, h: h}
}

// jsonGetter serves r's endpoints until the test ends and returns a GET of
// a path on them: the status and the body decoded as a JSON object. A
// request that fails fails the test; with strict, so does a body that is
// not JSON (without, the object is then nil).
func jsonGetter(t *testing.T, r *history.Reader, strict bool) func(path string) (int, map[string]any) {
	srv := httptest.NewServer(history.Handler(r))
	t.Cleanup(srv.Close)
	return func(path string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var obj map[string]any
		if err := json.Unmarshal(body, &obj); err != nil && strict {
			t.Fatalf("GET %s: %d, not JSON: %s", path, resp.StatusCode, body)
		}
		return resp.StatusCode, obj
	}
}

func (e *env) clientOpts() []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(e.h.Brokers...)}, e.h.ClientOpts...)
}

// openIndex opens (or reopens) the index in dir and starts an indexer on it.
func (e *env) openIndex(dir string) {
	t := e.t
	t.Helper()
	idx, err := history.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	e.idx, e.dir = idx, dir
	ix, err := history.NewIndexer(history.IndexerConfig{Index: idx, Topic: e.h.Topic("events"), ClientOpts: e.clientOpts(), Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.ix = ix
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx) }()
	cl, err := kgo.NewClient(e.clientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	e.r, err = history.NewReader(history.ReaderConfig{Index: idx, Client: cl, Registry: e.h.Registry, Topic: e.h.Topic("events")})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("indexer: %v", err)
		}
		cl.Close()
		_ = idx.Close()
	}
	t.Cleanup(e.stop)
}

func cmd(aggType, id, typ, json string) client.Command {
	return client.Command{AggregateType: aggType, AggregateID: id, Type: typ, JSON: []byte(json)}
}

func (e *env) send(c client.Command, status wire.Status) wire.Reply {
	e.t.Helper()
	rep := e.h.Send(c)
	if rep.Status != status {
		e.t.Fatalf("%s %s: reply %+v, want %s", c.AggregateID, c.Type, rep, status)
	}
	return rep
}

// scan reads the whole events topic and returns each aggregate's events
// (by "type/id") in log order: what the index must give without a scan.
func (e *env) scan() map[string][]history.Event {
	e.t.Helper()
	out := map[string][]history.Event{}
	for _, r := range e.h.ReadTopic("events") {
		env, _, err := e.h.Registry.DecodeEvents(r.Value)
		if err != nil {
			continue
		}
		k := env.AggregateType + "/" + env.AggregateID
		out[k] = append(out[k], history.Event{Event: env, Partition: r.Partition, Offset: r.Offset, Value: r.Value})
	}
	return out
}

// indexed waits until the index holds every record of the events topic.
func (e *env) indexed(want map[string][]history.Event) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := 0
		err := e.idx.Dump(func(string, string, history.Pointer) { n++ })
		if err != nil {
			e.t.Fatal(err)
		}
		total := 0
		for _, evs := range want {
			total += len(evs)
		}
		if n >= total {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("index holds %d entries, want %d", n, total)
		}
		select {
		case <-e.ix.Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sameHistory checks History against the scan for every aggregate.
func (e *env) sameHistory(ctx context.Context, want map[string][]history.Event) {
	e.t.Helper()
	for k, evs := range want {
		typ, id := splitKey(k)
		got, err := e.r.History(ctx, typ, id, 0, 0)
		if err != nil {
			e.t.Fatalf("History(%s): %v", k, err)
		}
		if !sameEvents(got, evs) {
			e.t.Fatalf("History(%s) = %s, want %s", k, describe(got), describe(evs))
		}
	}
}

func splitKey(k string) (string, string) {
	for i := range k {
		if k[i] == '/' {
			return k[:i], k[i+1:]
		}
	}
	return k, ""
}

func sameEvents(a, b []history.Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Offset != b[i].Offset || a[i].Partition != b[i].Partition || !reflect.DeepEqual(a[i].Event, b[i].Event) {
			return false
		}
	}
	return true
}

func describe(evs []history.Event) string {
	s := "["
	for _, e := range evs {
		s += fmt.Sprintf(" v%d@%d:%d", e.Version, e.Partition, e.Offset)
	}
	return s + " ]"
}

func history0() history.At { return history.At{} }
