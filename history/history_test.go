package history_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestTimeTravelProperty: for random command sequences on many aggregates
// of two types, interleaved on few partitions, History of every aggregate is
// exactly what a scan of the events topic finds, and for every version N the
// state at N is the fold of events 1..N (and, at the latest version, the
// snapshot on the changelog); at a time, the state is the one at the last
// version accepted by then.
func TestTimeTravelProperty(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	e := newEnv(t, 3)
	e.h.StartProcessor("p1", "")
	e.openIndex(t.TempDir())
	const accounts, folders, commands = 12, 6, 150
	for i := range accounts {
		e.send(cmd("account", fmt.Sprintf("acc-%d", i), "OpenAccount", `{"owner":"O","currency":"EUR"}`), wire.StatusAccepted)
	}
	for i := range folders {
		e.send(cmd("folder", fmt.Sprintf("f-%d", i), "CreateFolder", `{"name":"n"}`), wire.StatusAccepted)
	}
	for range commands {
		if rng.IntN(3) == 0 {
			id := fmt.Sprintf("f-%d", rng.IntN(folders))
			e.h.Send(cmd("folder", id, "RenameFolder", fmt.Sprintf(`{"name":"n%d"}`, rng.IntN(1000))))
			continue
		}
		id := fmt.Sprintf("acc-%d", rng.IntN(accounts))
		typ := []string{"Deposit", "Withdraw"}[rng.IntN(2)]
		e.h.Send(cmd("account", id, typ, fmt.Sprintf(`{"amount":%d}`, 1+rng.IntN(500))))
	}
	want := e.scan()
	e.indexed(want)
	ctx := context.Background()
	e.sameHistory(ctx, want)

	snaps := map[string]any{}
	for _, r := range e.h.ReadTopic("snapshots-changelog") {
		s, st, err := e.h.Registry.DecodeSnapshot(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		snaps[s.AggregateType+"/"+s.AggregateID] = st
	}
	for k, evs := range want {
		typ, id := splitKey(k)
		for n := 1; n <= len(evs); n++ {
			values := make([][]byte, n)
			for i := range n {
				values[i] = evs[i].Value
			}
			fold, version, err := e.h.Registry.ReplayState(typ, id, values)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.r.StateAt(ctx, typ, id, history.At{Version: int64(n)})
			if err != nil {
				t.Fatalf("%s at version %d: %v", k, n, err)
			}
			if got.Version != version || !reflect.DeepEqual(got.State, fold) {
				t.Fatalf("%s at version %d: %+v at %d, want %+v at %d", k, n, got.State, got.Version, fold, version)
			}
			// At the time of event n: at least version n (later events
			// of the same millisecond count too), never a later time.
			byTime, err := e.r.StateAt(ctx, typ, id, history.At{Time: time.UnixMilli(evs[n-1].TimestampMillis)})
			if err != nil {
				t.Fatal(err)
			}
			if byTime.Version < int64(n) || byTime.TimestampMillis != evs[n-1].TimestampMillis {
				t.Fatalf("%s at the time of version %d: version %d at %d", k, n, byTime.Version, byTime.TimestampMillis)
			}
		}
		latest, err := e.r.StateAt(ctx, typ, id, history.At{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(latest.State, snaps[k]) || latest.Version != int64(len(evs)) {
			t.Fatalf("%s latest %+v (v%d), snapshot %+v", k, latest.State, latest.Version, snaps[k])
		}
		if _, err := e.r.StateAt(ctx, typ, id, history.At{Version: int64(len(evs)) + 1}); !errors.Is(err, history.ErrNoSuchVersion) {
			t.Fatalf("%s past its latest version: %v, want ErrNoSuchVersion", k, err)
		}
	}
	// Ranges.
	for k, evs := range want {
		typ, id := splitKey(k)
		if len(evs) < 3 {
			continue
		}
		got, err := e.r.History(ctx, typ, id, 2, int64(len(evs)-1))
		if err != nil {
			t.Fatal(err)
		}
		if !sameEvents(got, evs[1:len(evs)-1]) {
			t.Fatalf("%s versions 2..%d: %s", k, len(evs)-1, describe(got))
		}
	}
	// An aggregate that never existed has no history.
	if got, err := e.r.History(ctx, "account", "nobody", 0, 0); err != nil || len(got) != 0 {
		t.Fatalf("History of nobody: %v, %v", got, err)
	}
}
