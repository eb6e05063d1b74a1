package topology

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/snapshots"
)

// Restore is its own phase, outside any transaction (Kafka Streams keeps a
// task RESTORING until its stores are caught up). Records of a partition
// whose store is not ready are deferred: the partition is rewound to its
// first unprocessed record and paused, its store is caught up (by the
// tailer for a newly assigned partition, in resumeReady for a suspect one),
// and it is resumed. Ready partitions keep being processed meanwhile.

// deferUnready takes the records of partitions that are not ready out of
// fetches, rewinding and pausing those partitions. Before a transaction
// (beforeBegin), a newly assigned partition whose store the tailer already
// caught up is taken at once instead: only the changelog's last few records
// are left to read.
func (p *Processor) deferUnready(ctx context.Context, fetches kgo.Fetches, beforeBegin bool) kgo.Fetches {
	var out kgo.Fetches
	var rewind map[int32]kgo.EpochOffset
	for _, f := range fetches {
		var nf kgo.Fetch
		for _, t := range f.Topics {
			nt := kgo.FetchTopic{Topic: t.Topic}
			for _, fp := range t.Partitions {
				if len(fp.Records) == 0 {
					continue
				}
				p.mu.Lock()
				gen := p.assigned[fp.Partition]
				p.mu.Unlock()
				_, deferred := p.deferred[fp.Partition]
				if beforeBegin && !deferred && p.parts[fp.Partition] == nil && gen != 0 && p.tail.ready(fp.Partition, gen) {
					if _, err := p.partition(ctx, fp.Partition); err != nil {
						p.log.Warn("taking a caught-up store", "partition", fp.Partition, "err", err)
					}
				}
				if ps := p.parts[fp.Partition]; ps != nil && ps.ready(gen) && !deferred {
					nt.Partitions = append(nt.Partitions, fp)
					continue
				}
				if rewind == nil {
					rewind = map[int32]kgo.EpochOffset{}
				}
				r := fp.Records[0]
				if _, ok := rewind[fp.Partition]; !ok {
					rewind[fp.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
				}
			}
			if len(nt.Partitions) > 0 {
				nf.Topics = append(nf.Topics, nt)
			}
		}
		if len(nf.Topics) > 0 {
			out = append(out, nf)
		}
	}
	if len(rewind) == 0 {
		return fetches
	}
	parts := p.deferPartitions(rewind)
	p.log.Info("records of partitions whose store is not ready deferred; catching up outside the transaction", "partitions", parts)
	p.tail.wake()
	return out
}

// deferPartitions pauses partitions and rewinds each to the given offset,
// or to where an earlier deferral rewound it if that is lower: records
// handed out after a rewind must never move it forward (they would be
// skipped). It runs between a poll and AllowRebalance (the session blocks
// rebalances on poll, run.go), so no revoke or assignment can run between
// the records being handed out and SetOffsets: the rewind applies to the
// assignment the records came from.
func (p *Processor) deferPartitions(rewind map[int32]kgo.EpochOffset) []int32 {
	topic := p.cfg.Topics.Commands
	parts := make([]int32, 0, len(rewind))
	for part, at := range rewind {
		if prev, ok := p.deferred[part]; ok && prev.Offset < at.Offset {
			rewind[part] = prev
		}
		p.deferred[part] = rewind[part]
		parts = append(parts, part)
	}
	cl := p.sess.Client()
	cl.PauseFetchPartitions(map[string][]int32{topic: parts})
	cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{topic: rewind})
	p.mu.Lock()
	p.stats.Deferred += int64(len(parts))
	p.mu.Unlock()
	return parts
}

// resumeReady catches up the stores of deferred partitions the run loop
// holds (suspect ones), takes those the tailer has caught up, and resumes
// every deferred partition whose store is ready. It runs before a
// transaction begins.
func (p *Processor) resumeReady(ctx context.Context) {
	if len(p.deferred) == 0 {
		return
	}
	var resume []int32
	for part := range p.deferred {
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		gen := p.assigned[part]
		p.mu.Unlock()
		if gen == 0 {
			// Not ours any more: nothing to resume into; unpause so that a
			// later assignment fetches it again.
			delete(p.deferred, part)
			resume = append(resume, part)
			continue
		}
		ps := p.parts[part]
		if ps == nil {
			if !p.tail.ready(part, gen) {
				continue // the tailer is still catching it up
			}
		}
		if ps != nil && p.unreadableWaiting(part) {
			continue // unreadable data, not due for a check (unreadable.go)
		}
		// What the checks below learn from comes from the schema book as
		// of now: a read that adds texts after this wakes the partition.
		p.checkGen = p.schemaBook.gen.Load()
		if ps != nil && len(ps.rebuild) > 0 {
			if err := p.rebuildDeferred(ps); err != nil {
				if uerr := unreadableRebuild(part, ps.rebuild[0].se.Key, err); uerr != err {
					p.markUnreadable(ps, ps.stopAt, ps.rebuild[0].se.Key, uerr)
					continue
				}
				p.log.Error("rebuilding aggregate state from the events topic; will retry", "partition", part, "err", err)
				continue
			}
		}
		if ps != nil && !p.recheckUnreadable(ps) {
			continue
		}
		if ps != nil {
			ps.stopAt = -1
		}
		if _, err := p.partition(ctx, part); err != nil {
			p.log.Warn("catching up a deferred partition; will retry", "partition", part, "err", err)
			continue
		}
		delete(p.deferred, part)
		resume = append(resume, part)
	}
	if len(resume) > 0 {
		p.sess.Client().ResumeFetchPartitions(map[string][]int32{p.cfg.Topics.Commands: resume})
		p.log.Info("deferred partitions resumed", "partitions", resume)
	}
}

// catchUpSuspect catches up the suspect partitions whose records are not
// waiting (an idle partition after an unconfirmed commit or a failed store
// write): readiness must not wait for the partition's next command. It runs
// before a transaction begins; a catch-up that fails is retried next loop.
func (p *Processor) catchUpSuspect(ctx context.Context) {
	for part, ps := range p.parts {
		if ctx.Err() != nil {
			return
		}
		if _, deferred := p.deferred[part]; deferred || ps.state != suspect {
			continue
		}
		if _, err := p.partition(ctx, part); err != nil {
			p.log.Warn("catching up a suspect partition; will retry", "partition", part, "err", err)
		}
	}
}

// restore reads the partition's changelog from the store's checkpoint to the
// changelog's committed end. report adds it to Restores (catch-ups of owned
// partitions; standby tailing is not a restore).
func (p *Processor) restore(ctx context.Context, part int32, store *snapshots.Store, report bool) (RestoreReport, error) {
	return p.restoreTo(ctx, part, store, report, 0)
}

// errStableBehind: the changelog's last stable offset did not pass the
// offset a suspect store must see (the outcome of our own transaction)
// within restoreWait.
var errStableBehind = errors.New("changelog stable offset has not passed the uncertain transaction yet")

// restoreWait bounds how long one catch-up waits for a transaction to end
// on the changelog; the caller re-checks later.
const restoreWait = 5 * time.Second

// restoreTo is restore for a store that must see the changelog at least up
// to mustReach (the end of a transaction whose outcome is unknown).
func (p *Processor) restoreTo(ctx context.Context, part int32, store *snapshots.Store, report bool, mustReach int64) (RestoreReport, error) {
	start := time.Now()
	rep := RestoreReport{Partition: part, Start: start}
	topic := p.cfg.Topics.Changelog
	so, eo, lso, err := p.changelogOffsets(ctx, part)
	if err != nil {
		return rep, err
	}
	for wait := 20 * time.Millisecond; lso < mustReach; wait = min(2*wait, time.Second) {
		// Another producer's open transaction may pin the stable offset
		// below ours: our transaction's own marker tells its outcome.
		if eo > mustReach {
			ended, err := p.txnEndedAt(ctx, part, mustReach-1, eo)
			if err != nil {
				return rep, err
			}
			if ended {
				break
			}
		}
		if time.Since(start) > restoreWait {
			return rep, fmt.Errorf("partition %d: %w (stable %d, need %d)", part, errStableBehind, lso, mustReach)
		}
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(wait):
		}
		if so, eo, lso, err = p.changelogOffsets(ctx, part); err != nil {
			return rep, err
		}
	}
	desc, err := logread.Describe(ctx, p.admCl, topic, part)
	if err != nil {
		return rep, fmt.Errorf("changelog identity: %w", err)
	}
	from, has, err := store.Checkpoint()
	if err != nil {
		return rep, err
	}
	src, hasSrc, err := store.Source()
	if err != nil {
		return rep, err
	}
	id := desc.TopicID[:]
	switch {
	case has && hasSrc && !bytes.Equal(src, id):
		// The changelog was deleted and recreated: the checkpoint refers to
		// another log, whatever its offsets say.
		p.log.Warn("store belongs to another changelog (topic recreated); rebuilding", "partition", part, "checkpoint", from, "store_topic_id", fmt.Sprintf("%x", src), "topic_id", fmt.Sprintf("%x", id))
		if err := store.Wipe(); err != nil {
			return rep, err
		}
		rep.Rebuilt, has = true, false
	case has && from > eo:
		// The store claims records the changelog does not have: the topic
		// was recreated (or truncated). Rebuild from scratch.
		p.log.Warn("store is ahead of the changelog; rebuilding", "partition", part, "checkpoint", from, "end", eo)
		if err := store.Wipe(); err != nil {
			return rep, err
		}
		rep.Rebuilt, has = true, false
	}
	if !hasSrc || !bytes.Equal(src, id) {
		if err := store.SetSource(id); err != nil {
			return rep, err
		}
	}
	if !has || from < so {
		from = so
	}
	target := lso
	rep.From, rep.To = from, target
	p.cfg.Observer.RestoreProgress(part, from, target)
	if from < target {
		rep.Records, err = p.readChangelog(ctx, part, store, from, target)
		if err != nil {
			return rep, err
		}
	}
	// Owned partitions only: a standby's copy is read again on its next
	// tick, and completed by this when it is taken over.
	if report && eo > max(from, target) {
		n, err := p.readPastStable(ctx, part, store, max(from, target), eo)
		rep.Records += n
		if err != nil {
			return rep, err
		}
	}
	rep.Duration = time.Since(start)
	if report {
		p.mu.Lock()
		p.restores = append(p.restores, rep)
		p.mu.Unlock()
	}
	return rep, nil
}

// changelogOffsets returns the start, end and last stable offsets of a
// changelog partition. The three lookups are independent: one round trip
// instead of three.
func (p *Processor) changelogOffsets(ctx context.Context, part int32) (so, eo, lso int64, err error) {
	topic := p.cfg.Topics.Changelog
	var (
		wg                   sync.WaitGroup
		starts, ends, stable kadm.ListedOffsets
		serr, eerr, lerr     error
	)
	wg.Add(3)
	go func() { defer wg.Done(); starts, serr = p.adm.ListStartOffsets(ctx, topic) }()
	go func() { defer wg.Done(); ends, eerr = p.adm.ListEndOffsets(ctx, topic) }()
	go func() { defer wg.Done(); stable, lerr = p.adm.ListCommittedOffsets(ctx, topic) }()
	wg.Wait()
	if serr != nil {
		return 0, 0, 0, fmt.Errorf("changelog start offsets: %w", serr)
	}
	if eerr != nil {
		return 0, 0, 0, fmt.Errorf("changelog end offsets: %w", eerr)
	}
	if lerr != nil {
		return 0, 0, 0, fmt.Errorf("changelog stable offsets: %w", lerr)
	}
	s, ok1 := starts.Lookup(topic, part)
	e, ok2 := ends.Lookup(topic, part)
	l, ok3 := stable.Lookup(topic, part)
	if !ok1 || !ok2 || !ok3 || s.Err != nil || e.Err != nil || l.Err != nil {
		return 0, 0, 0, fmt.Errorf("changelog partition %d offsets unavailable: %v %v %v", part, s.Err, e.Err, l.Err)
	}
	return s.Offset, e.Offset, l.Offset, nil
}

// readChangelog applies changelog records [from, target) to the store. The
// end is decided from the fetch position (logread), never from being handed
// the record at target-1: under read_committed an aborted transaction's
// records are not handed over, and its marker may lie past target.
func (p *Processor) readChangelog(ctx context.Context, part int32, store *snapshots.Store, from, target int64) (int, error) {
	prog := p.startProgress(part, from, target)
	records := 0
	// Runs of restoreRunBytes: the loader ingests each as one sorted table
	// (snapshots.Loader), so a large restore bypasses Pebble's log,
	// memtables and flushes. A full run is written by a goroutine of its
	// own while the next one is read (two loaders, used in turn; at most
	// one run in flight, and runs written in changelog order).
	cur, spare := store.NewLoader(restoreRunBytes), store.NewLoader(restoreRunBytes)
	applied := from
	written := make(chan error, 1)
	inFlight := false
	wait := func() error {
		if !inFlight {
			return nil
		}
		inFlight = false
		return <-written
	}
	flush := func(next int64, async bool) error {
		if next <= applied {
			return nil
		}
		if err := wait(); err != nil {
			return err
		}
		ld, n := cur, records
		cur, spare = spare, cur
		applied = next
		write := func() error {
			if err := ld.Flush(next); err != nil {
				return err
			}
			p.cfg.Observer.RestoreProgress(part, next, target)
			prog.update(next, n)
			return nil
		}
		if !async {
			return write()
		}
		inFlight = true
		go func() { written <- write() }()
		return nil
	}
	// Never return with a run still being written.
	defer func() { _ = wait() }()
	// A client of its own: fetches on one connection are answered in
	// order, so a slow partition would hold up every other restore (one
	// client for all partitions was tried: TestSlowRestoreRunsOutsideTheTransaction
	// showed the stall).
	cl, err := kgo.NewClient(p.clientOpts()...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	// ReadKV, not Read: keys and values straight from the fetched
	// batches, no kgo.Record per record (the loader copies them).
	next, err := logread.ReadKV(ctx, cl, p.cfg.Topics.Changelog, part, from, target,
		logread.Options{MaxBytes: int32(p.cfg.FetchMaxBytes), PartitionMaxBytes: int32(p.cfg.FetchMaxPartitionBytes)}, func(r *logread.KV) error {
			cur.Put(r.Key, r.Value) // a nil value (tombstone) deletes
			records++
			if cur.Size() >= restoreRunBytes {
				return flush(r.Offset+1, true)
			}
			return nil
		})
	if err != nil {
		return records, fmt.Errorf("reading changelog: %w", err)
	}
	if err := flush(min(next, target), false); err != nil {
		return records, err
	}
	if err := wait(); err != nil { // when the last run ended at next
		return records, err
	}
	prog.done(records)
	return records, nil
}

// restoreRunBytes is the size of one restore run (one ingested table, or
// one batch). A restoring partition holds two (one read, one written)
// besides its fetches.
const restoreRunBytes = 4 << 20

// readPastStable applies what was committed in [from, until) past the last
// stable offset. A transaction left open on the changelog (by a producer
// outside the group, or a worker that died mid-batch and whose transaction
// has not timed out yet) pins the stable offset, and commits of the
// partition's owner after it are invisible to read_committed: a restore that
// ended at the stable offset would act on a state older than the changelog
// (a second event at an existing version). So the tail is read
// read_uncommitted with its transaction markers; each producer's
// transactional records are kept until its marker and applied if it is a
// commit, in offset order. The records of a transaction still open are
// left out, and the checkpoint stays at from: the next catch-up reads the
// open transaction again, whatever its outcome.
func (p *Processor) readPastStable(ctx context.Context, part int32, store *snapshots.Store, from, until int64) (int, error) {
	cl, err := kgo.NewClient(p.clientOpts()...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	open := map[int64][]*kgo.Record{}
	var committed []*kgo.Record
	_, err = logread.Read(ctx, cl, p.cfg.Topics.Changelog, part, from, until,
		logread.Options{MaxBytes: int32(p.cfg.FetchMaxBytes), PartitionMaxBytes: int32(p.cfg.FetchMaxPartitionBytes),
			KeepControl: true, Uncommitted: true}, func(r *kgo.Record) error {
			switch {
			case r.Attrs.IsControl():
				// Key: version (int16), type (int16): 0 abort, 1 commit.
				if len(r.Key) >= 4 && binary.BigEndian.Uint16(r.Key[2:4]) == 1 {
					committed = append(committed, open[r.ProducerID]...)
				}
				delete(open, r.ProducerID)
			case r.Attrs.IsTransactional():
				open[r.ProducerID] = append(open[r.ProducerID], r)
			default:
				committed = append(committed, r)
			}
			return nil
		})
	if err != nil {
		return 0, fmt.Errorf("reading the changelog past its stable offset: %w", err)
	}
	if len(committed) == 0 {
		return 0, nil
	}
	slices.SortFunc(committed, func(a, b *kgo.Record) int { return cmp.Compare(a.Offset, b.Offset) })
	wb := store.NewBatch()
	for _, r := range committed {
		if r.Value == nil {
			wb.Delete(r.Key)
		} else {
			wb.Put(r.Key, r.Value)
		}
	}
	wb.SetCheckpoint(from)
	if err := store.Apply(wb); err != nil {
		return 0, err
	}
	p.log.Info("changelog read past an open transaction: commits after it applied", "partition", part, "from", from, "to", until, "records", len(committed), "open_producers", len(open))
	return len(committed), nil
}

// txnEndedAt reports whether the transaction that wrote the changelog record
// at offset at has ended (its producer's marker follows it before until).
// The records past it that are committed are then applied by readPastStable.
func (p *Processor) txnEndedAt(ctx context.Context, part int32, at, until int64) (bool, error) {
	cl, err := kgo.NewClient(p.clientOpts()...)
	if err != nil {
		return false, err
	}
	defer cl.Close()
	pid, found, ended := int64(0), false, false
	errDone := errors.New("done")
	_, err = logread.Read(ctx, cl, p.cfg.Topics.Changelog, part, at, until,
		logread.Options{MaxBytes: int32(p.cfg.FetchMaxBytes), PartitionMaxBytes: int32(p.cfg.FetchMaxPartitionBytes),
			KeepControl: true, Uncommitted: true}, func(r *kgo.Record) error {
			switch {
			case !found:
				if r.Offset != at || !r.Attrs.IsTransactional() {
					return errDone // not a transactional record of ours: cannot tell
				}
				pid, found = r.ProducerID, true
			case r.Attrs.IsControl() && r.ProducerID == pid:
				ended = true
				return errDone
			}
			return nil
		})
	if err != nil && !errors.Is(err, errDone) {
		return false, fmt.Errorf("reading the changelog for a transaction's marker: %w", err)
	}
	return ended, nil
}
