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
	"github.com/kcqrs/kcqrs/shred"
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

// forgedPrefix starts the command ids of the forged replies a workload may
// send: invalid commands that name the saga's reply topic and copy the
// correlation id of a real transfer leg. They are dead-lettered and
// answered INVALID bad_reply_address on command_reply (the saga's retired
// reply topic is internal), and must change nothing.
const forgedPrefix = "forged-"

// check reads every topic read_committed and verifies the run's invariants.
func (r *run) check(ctx context.Context) error {
	reg, err := examples.Registry()
	if err != nil {
		return err
	}
	var ring *shred.Keyring
	if r.o.Erasures > 0 {
		// Owners are sealed: read everything with the keys (erasure.go).
		if ring, err = r.keyring(ctx); err != nil {
			return err
		}
		if err := reg.EnablePersonal(ring); err != nil {
			return err
		}
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
	var wrong int
	for _, rec := range dlq {
		// Hostile commands (hostile.go) and forged replies (invalid on
		// purpose, forgedPrefix) are the only ones that may be dead-lettered.
		if id := header(rec, wire.HeaderCommandID); !strings.HasPrefix(id, hostilePrefix) && !strings.HasPrefix(id, forgedPrefix) {
			wrong++
		}
	}
	if wrong > 0 {
		r.violate("%d commands dead-lettered (the workload sends only valid ones, hostile ones with ids %s* and forged ones with ids %s*)", wrong, hostilePrefix, forgedPrefix)
	}
	r.sum.Replies, r.sum.Events = len(replies), len(events)

	// Every command record has exactly one reply (by correlation id).
	replyCount := map[string]int{}
	for _, rec := range replies {
		replyCount[header(rec, wire.HeaderCorrelationID)]++
	}
	// The driver's clients use a new correlation id per attempt: one
	// carried by two command records was committed twice. The saga uses
	// one per leg of a transfer and may send a leg again (a credit
	// re-driven after RedriveAfter, a saga replaying from earlier
	// offsets; the processor deduplicates or refuses it): each record of
	// it needs its own reply.
	commandCount := map[string]int{}
	for _, rec := range commands {
		commandCount[header(rec, wire.HeaderCorrelationID)]++
	}
	for _, rec := range commands {
		corr := header(rec, wire.HeaderCorrelationID)
		n, ok := commandCount[corr]
		if !ok {
			continue // checked with its first record
		}
		delete(commandCount, corr)
		if id := header(rec, wire.HeaderCommandID); n > 1 && !strings.HasPrefix(id, "transfer:") && !strings.HasPrefix(id, forgedPrefix) {
			r.sum.DuplicatesFound++
			r.violate("command %s (correlation id %s) was committed %d times", header(rec, wire.HeaderCommandID), corr, n)
		}
		switch m := replyCount[corr]; {
		case m < n:
			r.sum.Lost++
			r.violate("command at %d/%d (id %s): %d record(s), %d replies", rec.Partition, rec.Offset, header(rec, wire.HeaderCommandID), n, m)
		case m > n:
			r.sum.DuplicatesFound++
			r.violate("command at %d/%d (id %s): %d record(s), %d replies", rec.Partition, rec.Offset, header(rec, wire.HeaderCommandID), n, m)
		}
		delete(replyCount, corr)
	}
	for corr, n := range replyCount {
		r.violate("%d replies to correlation id %q that no command carries", n, corr)
	}

	// The saga's commands: the first reply to each command id is its
	// outcome, and must be ACCEPTED: a credit is always decided (credited
	// or refused, both events) the first time, a completion or refund
	// always finds its transfer pending the first time. A leg sent again
	// (re-driven, replayed) is deduplicated (the same answer) or, beyond
	// the dedupe window, refused without effect: already_credited for a
	// credit, unknown_transfer for a completion or refund. The legs name
	// no reply topic: they are answered on command_reply, with the
	// clients' commands (skipped here).
	sagaOutcomes := map[string]wire.Reply{}
	for _, rec := range replies {
		rep, err := reg.DecodeReply(rec.Value, header(rec, wire.HeaderContentType))
		if err != nil {
			r.violate("saga reply %d/%d: %v", rec.Partition, rec.Offset, err)
			continue
		}
		if !strings.HasPrefix(rep.CommandID, "transfer:") {
			continue
		}
		again := account.CodeUnknownTransfer
		if strings.HasSuffix(rep.CommandID, ":credit") {
			again = account.CodeAlreadyCredited
		}
		first, seen := sagaOutcomes[rep.CommandID]
		switch {
		case !seen:
			sagaOutcomes[rep.CommandID] = rep
			if rep.Status != wire.StatusAccepted {
				r.violate("saga command %s not accepted the first time: %s %s: %s", rep.CommandID, rep.Status, rep.Code, rep.Message)
			}
		case rep.Duplicate && (rep.Status != first.Status || rep.Version != first.Version):
			r.violate("saga command %s answered %+v, earlier %+v", rep.CommandID, rep, first)
		case !rep.Duplicate && (rep.Status != wire.StatusRejected || rep.Code != again):
			r.violate("saga command %s sent again answered %s %s (want a duplicate or %s): %s", rep.CommandID, rep.Status, rep.Code, again, rep.Message)
		}
	}

	// Events: contiguous versions per aggregate, one event per accepted
	// command, none for the others.
	type agg struct {
		versions []int64
		state    account.Account
	}
	aggs := map[string]*agg{}
	perCommand := map[string]int{}
	var accountEvents []accountEvent
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
		accountEvents = append(accountEvents, accountEvent{env.AggregateID, env.Version, ev})
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
	var acceptedDebits int
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
			case "DebitForTransfer":
				acceptedDebits++
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
	for id, rep := range sagaOutcomes {
		n := perCommand[id]
		delete(perCommand, id)
		switch {
		case rep.Status == wire.StatusAccepted && n != 1:
			r.sum.DuplicatesFound++
			r.violate("accepted saga command %s has %d events", id, n)
		case rep.Status != wire.StatusAccepted && n != 0:
			r.sum.DuplicatesFound++
			r.violate("saga command %s answered %s but has %d events", id, rep.Status, n)
		}
	}
	for id, n := range perCommand {
		r.violate("%d events of command %s that neither the driver nor the saga saw answered", n, id)
	}

	// Transfers: every accepted debit ended exactly once, by a credit and
	// a completion or by a refund.
	tr := checkTransfers(accountEvents)
	r.sum.Transfers, r.sum.Completed, r.sum.Refunded = tr.Started, tr.Completed, tr.Refunded
	for _, v := range tr.Violations {
		r.violate("%s", v)
	}
	if tr.Pending > 0 {
		r.sum.Lost += tr.Pending
		r.violate("%d transfers never ended (no completion or refund), e.g. %s", tr.Pending, tr.PendingExample)
	}
	if tr.Started != acceptedDebits {
		r.violate("%d transfer debits on the events topic, %d DebitForTransfer commands accepted", tr.Started, acceptedDebits)
	}

	// Snapshots: the last one per aggregate is the fold of its events;
	// balances are non-negative and the money is conserved.
	latest := map[string][]byte{}
	byPartition := map[int32][]changelogRec{}
	for _, c := range changelog {
		latest[string(c.Key)] = c.Value
		byPartition[c.Partition] = append(byPartition[c.Partition], changelogRec{c.Offset, string(c.Key), c.Value})
	}
	var total, inFlight int64
	for key, a := range aggs {
		v, ok := latest[key]
		if ring != nil {
			switch erased := ring.Erased(key); {
			case erased && a.state.Owner != shred.Erased:
				r.violate("%s was erased but its events fold to owner %q", key, a.state.Owner)
			case !erased && a.state.Owner != "chaos" && a.state.Owner != "":
				// "": never opened (a refused transfer's event only).
				r.violate("%s: owner %q, want the one written (chaos)", key, a.state.Owner)
			case erased && ok && v == nil:
				r.violate("%s was erased but its latest changelog record is a tombstone: the state its transfers need is lost", key)
			}
			// An erased aggregate keeps a snapshot without personal data
			// (owner "[erased]"): checked against its fold like any other.
		}
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
		if got, ok := st.(account.Account); !ok || !sameAccount(got, a.state) {
			r.violate("%s: snapshot state %+v, fold of its events %+v", key, st, a.state)
		}
		if a.state.Balance < 0 {
			r.violate("%s: negative balance %d", key, a.state.Balance)
		}
		total += a.state.Balance
		for _, p := range a.state.Pending {
			inFlight += p.Amount
		}
		if len(a.state.Pending) > 0 {
			r.violate("%s: %d outgoing transfers still pending at the end, first %q", key, len(a.state.Pending), a.state.Pending[0].TransferID)
		}
	}
	// An aggregate without events has a snapshot only for the dedupe
	// window of the commands it rejected (transfers to a never-opened
	// account): at version 0, with the zero state.
	for key, v := range latest {
		if aggs[key] != nil || v == nil && ring != nil && ring.Erased(key) {
			continue
		}
		snap, st, err := reg.DecodeSnapshot(v)
		if err != nil {
			r.violate("snapshot %s: %v", key, err)
			continue
		}
		if got, ok := st.(account.Account); snap.Version != 0 || !ok || !sameAccount(got, account.Account{}) {
			r.violate("%s has no events but a snapshot at version %d with state %+v", key, snap.Version, st)
		}
	}
	if ring != nil {
		r.mu.Lock()
		erased := r.erased
		r.mu.Unlock()
		r.sum.Erased = len(erased)
		for _, id := range erased {
			if !ring.Erased("account/" + id) {
				r.violate("account/%s: erasure answered but no erasure marker in kcqrs-keys", id)
			}
		}
	}
	if total+inFlight != deposited-withdrawn {
		r.violate("money not conserved: balances sum to %d (plus %d in pending transfers), accepted deposits %d minus withdrawals %d = %d", total, inFlight, deposited, withdrawn, deposited-withdrawn)
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

// sameAccount compares two states, an empty list equal to none (a decoder
// may return either).
func sameAccount(a, b account.Account) bool {
	norm := func(s account.Account) account.Account {
		if len(s.Pending) == 0 {
			s.Pending = nil
		}
		if len(s.Credited) == 0 {
			s.Credited = nil
		}
		return s
	}
	return reflect.DeepEqual(norm(a), norm(b))
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
