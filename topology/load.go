package topology

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/snapshots"
	"github.com/kcqrs/kcqrs/wire"
)

// partition returns the state of an owned partition, taking its store from
// the tailer (or opening it) and catching it up with the changelog when it
// is not running in the current assignment (first use, or suspect). It runs
// before a transaction begins (resumeReady), never inside one. Records of a
// partition are only polled after the group's stable offsets are known, so
// every transaction of an earlier owner that committed offsets has ended by
// now. One that died mid-batch (before its offset commit), or a producer
// outside the group, may still hold a transaction open on the changelog:
// the commits after it are read past the stable offset (readPastStable).
func (p *Processor) partition(ctx context.Context, part int32) (*partitionState, error) {
	p.mu.Lock()
	gen := p.assigned[part]
	p.mu.Unlock()
	ps := p.parts[part]
	if ps == nil {
		// Mark the partition active before asking the tailer, so the
		// tailer does not open it meanwhile.
		p.mu.Lock()
		p.active[part] = true
		p.mu.Unlock()
		store := p.tail.take(part)
		if store == nil {
			var err error
			store, err = p.openStore(part)
			if err != nil {
				p.mu.Lock()
				delete(p.active, part)
				p.mu.Unlock()
				return nil, err
			}
		}
		ps = &partitionState{p: part, store: store, state: restoring, lastOffset: -1, stopAt: -1}
		p.parts[part] = ps
	}
	if !ps.ready(gen) {
		p.quiesceStore(ps) // before reading its checkpoint (applier.go)
		p.states.dropPartition(part)
		if err := p.loadKeys(ctx, part); err != nil {
			return nil, err
		}
		rep, err := p.restoreTo(ctx, ps.p, ps.store, true, ps.mustReach)
		if err != nil {
			return nil, err
		}
		p.markActive(part, gen, rep.To)
		was := ps.state
		ps.state, ps.gen, ps.mustReach = running, gen, 0
		if gen == 0 {
			ps.state = restoring // not owned: catch up again before any use
		}
		p.log.Info("store caught up", "partition", part, "was", was, "from", rep.From, "to", rep.To, "records", rep.Records, "rebuilt", rep.Rebuilt, "took", rep.Duration)
	}
	return ps, nil
}

func (p *Processor) openStore(part int32) (*snapshots.Store, error) {
	dir := snapshots.PartitionDir(p.cfg.StateDir, p.cfg.Topics.Changelog, part)
	// Memtables are sized from the stores the worker holds now (owned
	// partitions, and standbys): Config.MemTableBytes is for all of them.
	p.mu.Lock()
	stores := len(p.assigned) * (1 + p.cfg.Standbys)
	p.mu.Unlock()
	o := snapshots.Options{Cache: p.cache, MemTableSize: p.cfg.memTableSize(stores)}
	if h := p.cfg.hooks; h != nil {
		o.FS = h.storeFS
		if h.storeMemTable > 0 {
			o.MemTableSize = h.storeMemTable
		}
	}
	return snapshots.Open(dir, o)
}

// load returns the aggregate's state: from this batch, else from the store,
// else the initial state.
func (p *Processor) load(ps *partitionState, bt *boundType, id string) (*aggState, error) {
	// The key is built in a buffer and looked up without a copy; it is
	// made a string only for an aggregate not held in memory.
	p.keyBuf = append(append(append(p.keyBuf[:0], bt.handler.AggregateType()...), '/'), id...)
	if a := ps.pending[string(p.keyBuf)]; a != nil {
		return a, nil
	}
	var key string
	a := p.states.takeKey(ps.p, p.keyBuf) // committed state kept from an earlier batch
	if a != nil {
		key = a.key
	} else {
		key = string(p.keyBuf)
	}
	if a == nil && ps.rebuilt[key] != nil {
		// Rebuilt outside the transaction (rebuildDeferred): dirty, so it
		// is written back as a current-schema snapshot with this batch.
		a = ps.rebuilt[key]
		delete(ps.rebuilt, key)
	}
	if a == nil {
		val, ok, err := p.storeGet(ps, key)
		if err != nil {
			return nil, err
		}
		if ok {
			a, err = p.reg.decodeSnapshot(key, val)
			var se *StateSchemaError
			if errors.As(err, &se) {
				// Rebuilding reads the events topic: slow, so never inside
				// the transaction. The partition is deferred from this
				// command on (handle.go, deferForRebuild).
				return nil, &needsRebuild{se: se, bt: bt}
			}
			if err != nil && errors.Is(err, shred.ErrNoKey) && ps.state == running {
				// The partition's keys were read to the end of the keys
				// topic before it ran (prepare, loadKeys): a subject with
				// neither key nor erasure lost its key for good (a
				// tombstone in the keys topic). That aggregate alone is
				// refused; holding the partition back would wait for ever.
				return nil, &KeyLostError{Partition: ps.p, Key: key, Err: err}
			}
			if err != nil {
				// Deterministic: retrying the transaction cannot help.
				// The partition waits, the others go on (unreadable.go).
				return nil, p.unreadableSnapshot(ps.p, key, val, err)
			}
			if a.bt != bt {
				return nil, &UnreadableError{Partition: ps.p, Key: key, Err: fmt.Errorf("snapshot %q belongs to aggregate type %q", key, a.bt.handler.AggregateType())}
			}
		} else {
			a = &aggState{key: key, id: id, bt: bt, state: bt.handler.InitialState()}
		}
	}
	if ps.pending == nil {
		ps.pending = map[string]*aggState{}
	}
	ps.pending[key] = a
	ps.order = append(ps.order, a)
	return a, nil
}

// rebuildState replays one aggregate's events from partition ps.p of the
// events topic when its snapshot's state cannot be read with the current
// schemas (a state schema change without history or upcaster). With
// Config.History it reads only that aggregate's events (history.go);
// without one, or when that does not give exactly the snapshot's version,
// it reads the whole partition up to its last stable offset: slow, but it runs
// once per such aggregate: the rebuilt state is marked dirty and written back
// as a current-schema snapshot with the batch. A replay that does not end at
// the snapshot's version is an error: acting on a state that differs from
// the events would be worse than failing the batch.
func (p *Processor) rebuildState(ps *partitionState, bt *boundType, se *StateSchemaError) (*aggState, error) {
	p.log.Warn("snapshot state unreadable; rebuilding it from the events topic", "key", se.Key, "version", se.Version, "err", se.Err)
	ctx, cancel := context.WithTimeout(context.Background(), rebuildTimeout)
	defer cancel()
	if p.cfg.History != nil {
		state, n, ok, why := p.rebuildFromHistory(ctx, ps, se)
		if ok {
			p.log.Info("snapshot state rebuilt from the aggregate's history", "key", se.Key, "version", se.Version, "events", n)
			p.mu.Lock()
			p.stats.StateRebuilds++
			p.mu.Unlock()
			return &aggState{key: se.Key, id: se.AggregateID, bt: bt, version: se.Version, state: state, recent: se.recent, dirty: true}, nil
		}
		p.log.Warn("rebuild from the aggregate's history failed; scanning the partition", "key", se.Key, "err", why)
	}
	topic := p.cfg.Topics.Events
	starts, err := p.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("%w; rebuild: events start offsets: %v", se, err)
	}
	stable, err := p.adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("%w; rebuild: events stable offsets: %v", se, err)
	}
	so, ok1 := starts.Lookup(topic, ps.p)
	lso, ok2 := stable.Lookup(topic, ps.p)
	if !ok1 || !ok2 || so.Err != nil || lso.Err != nil {
		return nil, fmt.Errorf("%w; rebuild: events partition %d offsets unavailable", se, ps.p)
	}
	var values [][]byte
	if so.Offset < lso.Offset {
		// The end is decided from the fetch position (logread), not from
		// the last record handed over: see readChangelog.
		_, err := logread.Read(ctx, p.admCl, topic, ps.p, so.Offset, lso.Offset,
			logread.Options{MaxBytes: int32(p.cfg.FetchMaxBytes), PartitionMaxBytes: int32(p.cfg.FetchMaxPartitionBytes)}, func(r *kgo.Record) error {
				if string(r.Key) != se.AggregateID {
					return nil
				}
				var env wire.Event
				value, err := p.reg.unframe(r.Value)
				if err == nil {
					err = p.reg.event.Decode(value, &env)
				}
				if err == nil && env.AggregateType == se.AggregateType && env.AggregateID == se.AggregateID {
					values = append(values, r.Value)
				}
				return nil
			})
		if err != nil {
			return nil, fmt.Errorf("%w; rebuild: reading events: %v", se, err)
		}
	}
	state, version, err := p.reg.ReplayState(se.AggregateType, se.AggregateID, values)
	if err != nil {
		// Both wrapped: the schemas it lacks are named (unreadable.go).
		return nil, fmt.Errorf("%w; rebuild: %w", se, err)
	}
	if version != se.Version {
		return nil, fmt.Errorf("%w; rebuild: the events topic has the aggregate at version %d", se, version)
	}
	p.log.Info("snapshot state rebuilt from events", "key", se.Key, "version", version, "events", len(values))
	p.mu.Lock()
	p.stats.StateRebuilds++
	p.mu.Unlock()
	return &aggState{key: se.Key, id: se.AggregateID, bt: bt, version: version, state: state, recent: se.recent, dirty: true}, nil
}

// rebuildTimeout bounds one aggregate's rebuild from the events topic.
const rebuildTimeout = 5 * time.Minute

// needsRebuild: an aggregate's snapshot state cannot be read with the
// current schemas; it must be rebuilt from the events topic before the
// command that loaded it can run.
type needsRebuild struct {
	se *StateSchemaError
	bt *boundType
}

func (e *needsRebuild) Error() string {
	return e.se.Error() + " (rebuild from the events topic pending)"
}
func (e *needsRebuild) Unwrap() error { return e.se }

// deferForRebuild takes the rest of r's partition out of the open
// transaction when err asks for a rebuild: the partition is rewound to r
// and paused (the records before r stay in the transaction, whose offset
// commit then ends at r), and the rebuild runs before the next transaction
// (rebuildDeferred). It reports whether it did.
func (p *Processor) deferForRebuild(b *batch, ps *partitionState, r *kgo.Record, err error) bool {
	var nr *needsRebuild
	if !errors.As(err, &nr) {
		return false
	}
	ps.rebuild = append(ps.rebuild, nr)
	ps.stopAt = r.Offset
	p.deferPartitions(map[int32]kgo.EpochOffset{ps.p: {Epoch: r.LeaderEpoch, Offset: r.Offset}})
	p.log.Info("partition deferred: an aggregate's state must be rebuilt from the events topic first", "partition", ps.p, "offset", r.Offset, "key", nr.se.Key)
	return true
}

// rebuildDeferred rebuilds, outside any transaction, the aggregates whose
// rebuild deferred the partition. A failed rebuild is retried before the
// next transaction (with the abort backoff's pace: one try per loop).
func (p *Processor) rebuildDeferred(ps *partitionState) error {
	for len(ps.rebuild) > 0 {
		nr := ps.rebuild[0]
		// A state written by a newer build: learning its schema (schema
		// topic) makes the snapshot readable, no rebuild needed.
		if fps := unknownFingerprints(nr.se, nil, nil); len(fps) > 0 && p.learnSchemas(fps) > 0 {
			if val, ok, err := p.storeGet(ps, nr.se.Key); err == nil && ok {
				if _, err := p.reg.decodeSnapshot(nr.se.Key, val); err == nil {
					ps.rebuild = ps.rebuild[1:]
					continue
				}
			}
		}
		a, err := p.rebuildState(ps, nr.bt, nr.se)
		if fps := unknownFingerprints(err, nil, nil); err != nil && len(fps) > 0 && p.learnSchemas(fps) > 0 {
			a, err = p.rebuildState(ps, nr.bt, nr.se) // events of a newer build, now readable
		}
		if err != nil {
			return err
		}
		if ps.rebuilt == nil {
			ps.rebuilt = map[string]*aggState{}
		}
		ps.rebuilt[a.key] = a
		ps.rebuild = ps.rebuild[1:]
	}
	return nil
}
