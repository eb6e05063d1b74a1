package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/snapshots"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// check reads every topic read_committed and verifies the run's invariants.
func (r *run) check(ctx context.Context) error {
	reg, err := examples.Registry()
	if err != nil {
		return err
	}
	read := func(topic string) ([]*kgo.Record, error) {
		recs, err := topologytest.ReadCommitted(ctx, r.brokers, topic)
		if err != nil {
			return nil, fmt.Errorf("chaos: reading %s: %w", topic, err)
		}
		return recs, nil
	}
	commands, err := read("commands")
	if err != nil {
		return err
	}
	replies, err := read("command_reply")
	if err != nil {
		return err
	}
	events, err := read("events")
	if err != nil {
		return err
	}
	changelog, err := read("snapshots-changelog")
	if err != nil {
		return err
	}
	dlq, _ := read("commands-dlq")
	if len(dlq) > 0 {
		r.violate("%d commands dead-lettered (the workload sends only valid ones)", len(dlq))
	}
	r.sum.Replies, r.sum.Events = len(replies), len(events)

	// Every command record has exactly one reply (by correlation id).
	replyCount := map[string]int{}
	for _, rec := range replies {
		replyCount[header(rec, wire.HeaderCorrelationID)]++
	}
	for _, rec := range commands {
		corr := header(rec, wire.HeaderCorrelationID)
		switch n := replyCount[corr]; {
		case n == 0:
			r.sum.Lost++
			r.violate("command at %d/%d (id %s) has no reply", rec.Partition, rec.Offset, header(rec, wire.HeaderCommandID))
		case n > 1:
			r.sum.DuplicatesFound++
			r.violate("command at %d/%d (id %s) has %d replies", rec.Partition, rec.Offset, header(rec, wire.HeaderCommandID), n)
		}
		delete(replyCount, corr)
	}
	for corr, n := range replyCount {
		r.violate("%d replies to correlation id %q that no command carries", n, corr)
	}

	// Events: contiguous versions per aggregate, one event per accepted
	// command, none for the others.
	type agg struct {
		versions []int64
		state    account.Account
	}
	aggs := map[string]*agg{}
	perCommand := map[string]int{}
	for _, rec := range events {
		env, ev, err := reg.DecodeEvent(rec.Value)
		if err != nil {
			r.violate("event %d/%d: %v", rec.Partition, rec.Offset, err)
			continue
		}
		key := env.AggregateType + "/" + env.AggregateID
		if want := topology.PartitionFor([]byte(env.AggregateID), r.o.Partitions); rec.Partition != want {
			r.violate("event of %s on partition %d, want %d", key, rec.Partition, want)
		}
		a := aggs[key]
		if a == nil {
			a = &agg{}
			aggs[key] = a
		}
		a.versions = append(a.versions, env.Version)
		a.state = account.Evolve(a.state, ev)
		perCommand[env.CommandID]++
	}
	for key, a := range aggs {
		for i, v := range a.versions {
			if v != int64(i+1) {
				r.sum.DuplicatesFound++
				r.violate("%s: event versions are not 1..n (duplicate or gap) at index %d: %v", key, i, a.versions[max(0, i-2):min(len(a.versions), i+3)])
				break
			}
		}
	}
	r.mu.Lock()
	outcomes := r.outcomes
	lat := r.lat
	r.mu.Unlock()
	var deposited, withdrawn int64
	for id, o := range outcomes {
		n := perCommand[id]
		delete(perCommand, id)
		switch o.reply.Status {
		case wire.StatusAccepted:
			r.sum.Accepted++
			switch {
			case n == 0:
				r.sum.Lost++
				r.violate("accepted command %s (%s %s) has no event", id, o.typ, o.account)
			case n > 1:
				r.sum.DuplicatesFound++
				r.violate("accepted command %s (%s %s) has %d events", id, o.typ, o.account, n)
			}
			switch o.typ {
			case "Deposit":
				deposited += o.amount
			case "Withdraw":
				withdrawn += o.amount
			}
		default:
			r.sum.Rejected++
			if o.reply.Status != wire.StatusRejected {
				r.violate("command %s answered %s (%s)", id, o.reply.Status, o.reply.Message)
			}
			if n != 0 {
				r.sum.DuplicatesFound++
				r.violate("command %s answered %s but has %d events", id, o.reply.Status, n)
			}
		}
	}
	for id, n := range perCommand {
		r.violate("%d events of command %s the driver never saw answered", n, id)
	}

	// Snapshots: the last one per aggregate is the fold of its events;
	// balances are non-negative and the money is conserved.
	latest := map[string][]byte{}
	byPartition := map[int32][]changelogRec{}
	for _, c := range changelog {
		latest[string(c.Key)] = c.Value
		byPartition[c.Partition] = append(byPartition[c.Partition], changelogRec{c.Offset, string(c.Key), c.Value})
	}
	var total int64
	for key, a := range aggs {
		v, ok := latest[key]
		if !ok {
			r.sum.Lost++
			r.violate("%s has events but no snapshot", key)
			continue
		}
		snap, st, err := reg.DecodeSnapshot(v)
		if err != nil {
			r.violate("snapshot %s: %v", key, err)
			continue
		}
		if snap.Version != int64(len(a.versions)) {
			r.violate("%s: snapshot at version %d, %d events", key, snap.Version, len(a.versions))
		}
		if got, ok := st.(account.Account); !ok || !reflect.DeepEqual(got, a.state) {
			r.violate("%s: snapshot state %+v, fold of its events %+v", key, st, a.state)
		}
		if a.state.Balance < 0 {
			r.violate("%s: negative balance %d", key, a.state.Balance)
		}
		total += a.state.Balance
	}
	if len(latest) != len(aggs) {
		r.violate("%d snapshots for %d aggregates with events", len(latest), len(aggs))
	}
	if total != deposited-withdrawn {
		r.violate("money not conserved: balances sum to %d, accepted deposits %d minus withdrawals %d = %d", total, deposited, withdrawn, deposited-withdrawn)
	}

	// Every worker's stores equal the changelog up to their checkpoints,
	// and each partition's freshest store is at the changelog's end.
	freshest := map[int32]int64{}
	for _, w := range r.workers {
		base := filepath.Join(w.stateDir(), "snapshots-changelog")
		entries, err := os.ReadDir(base)
		if err != nil {
			continue
		}
		for _, e := range entries {
			var p int32
			if _, err := fmt.Sscanf(e.Name(), "partition-%d", &p); err != nil {
				continue
			}
			cp, keys, err := r.checkStore(snapshots.PartitionDir(w.stateDir(), "snapshots-changelog", p), upTo(byPartition[p]))
			if err != nil {
				r.violate("worker %s partition %d: %v", w.id, p, err)
				continue
			}
			r.sum.StoresChecked++
			r.sum.StoreKeysChecked += keys
			freshest[p] = max(freshest[p], cp)
		}
	}
	for p, recs := range byPartition {
		last := recs[len(recs)-1].offset
		if freshest[p] <= last {
			r.violate("partition %d: no worker's store reached the changelog's last record %d (freshest checkpoint %d)", p, last, freshest[p])
		}
	}

	r.sum.MedianFailover, r.sum.Max = median(r.sum.Failovers), maxOf(r.sum.Failovers)
	r.sum.MedianRestartFailover = median(r.sum.RestartFailovers)
	r.sum.MaxCommandLatency = maxOf(lat)
	return nil
}

type changelogRec struct {
	offset int64
	key    string
	value  []byte
}

// upTo returns the latest value per key among the changelog records below
// offset cp: what a store at checkpoint cp must hold.
func upTo(recs []changelogRec) func(cp int64) map[string][]byte {
	return func(cp int64) map[string][]byte {
		m := map[string][]byte{}
		for _, x := range recs {
			if x.offset >= cp {
				break
			}
			if x.value == nil {
				delete(m, x.key)
			} else {
				m[x.key] = x.value
			}
		}
		return m
	}
}

func (r *run) checkStore(dir string, want func(cp int64) map[string][]byte) (int64, int, error) {
	st, err := snapshots.Open(dir, snapshots.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	cp, ok, err := st.Checkpoint()
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		cp = 0
	}
	exp := want(cp)
	got := map[string][]byte{}
	if err := st.Scan(func(k, v []byte) error {
		got[string(k)] = bytes.Clone(v)
		return nil
	}); err != nil {
		return 0, 0, err
	}
	var diffs []string
	for k, v := range exp {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, k+" missing")
		} else if !bytes.Equal(g, v) {
			diffs = append(diffs, k+" differs")
		}
	}
	for k := range got {
		if _, ok := exp[k]; !ok {
			diffs = append(diffs, k+" not in the changelog below the checkpoint")
		}
	}
	if len(diffs) > 0 {
		return cp, 0, fmt.Errorf("store at checkpoint %d differs from the changelog: %s", cp, strings.Join(diffs[:min(5, len(diffs))], ", "))
	}
	return cp, len(got), nil
}
