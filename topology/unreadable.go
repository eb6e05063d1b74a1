package topology

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/wire"
)

// Data a worker cannot read: after a rollback, or when an old worker
// inherits a partition during a rolling upgrade, a partition's snapshots
// and events may have been written with schemas this build does not know.
// Retrying the transaction cannot help (the data does not change), and
// aborting it would stop every partition of the batch and fill the
// infinite-retention topics with aborted records. So the partition alone is
// taken out of processing, like a partition waiting for a state rebuild
// (load.go): rewound to the command that met the data and paused. The
// worker reports not ready naming it and the schema fingerprints it lacks
// (Unreadable, Ready), and checks again with a backoff. The other
// partitions keep committing. A build that reads the data (the roll
// forward) takes the partition's commands up where they stopped.

// UnreadableError is a snapshot or event of a partition that this build
// cannot read. Fingerprints are the writer schemas it lacks (none when the
// data is not a fingerprint problem: a corrupt value, say).
type UnreadableError struct {
	Partition    int32
	Key          string // the aggregate's snapshot key
	Fingerprints []uint64
	Err          error
}

func (e *UnreadableError) Error() string {
	if len(e.Fingerprints) > 0 {
		return fmt.Sprintf("partition %d, %s: written with schema fingerprint %s, which this build does not know (written by a newer build?): %v",
			e.Partition, e.Key, fingerprintList(e.Fingerprints), e.Err)
	}
	return fmt.Sprintf("partition %d, %s: unreadable: %v", e.Partition, e.Key, e.Err)
}

func (e *UnreadableError) Unwrap() error { return e.Err }

func fingerprintList(fps []uint64) string {
	s := make([]string, len(fps))
	for i, fp := range fps {
		s[i] = fmt.Sprintf("%#016x", fp)
	}
	return strings.Join(s, ", ")
}

// unknownFingerprints collects the fingerprints of every
// *schemas.UnknownSchemaError in err's tree, plus the writer fingerprint of
// value when it is not among known (a value written with another schema
// than the decoder's: its fingerprint is the one lacking).
func unknownFingerprints(err error, value []byte, known func(uint64) bool) []uint64 {
	var fps []uint64
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if ue, ok := err.(*schemas.UnknownSchemaError); ok && !slices.Contains(fps, ue.Fingerprint) {
			fps = append(fps, ue.Fingerprint)
		}
		switch x := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	if value != nil && known != nil {
		if fp, ferr := schemas.Fingerprint(value); ferr == nil && !known(fp) && !slices.Contains(fps, fp) {
			fps = append(fps, fp)
		}
	}
	return fps
}

// Unreadable is a partition this worker owns and does not process because
// it holds data the worker cannot read.
type Unreadable struct {
	Partition int32
	// Offset is the command partition's offset the partition waits at.
	Offset int64
	// Key is the snapshot key of the aggregate whose data is unreadable.
	Key string
	// Fingerprints are the writer schemas this build lacks.
	Fingerprints []uint64
	// Err says what failed.
	Err      error
	Since    time.Time
	Attempts int       // checks so far (the first included)
	NextTry  time.Time // when it is checked again

	// learnGen is the schema book's generation its last check saw: a read
	// of the schema topic that found texts since then makes it due at once.
	learnGen int64
}

// Unreadable returns the owned partitions held back by data this worker
// cannot read, by partition.
func (p *Processor) Unreadable() []Unreadable {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Unreadable, 0, len(p.unreadable))
	for part, u := range p.unreadable {
		if p.assigned[part] != 0 {
			out = append(out, *u)
		}
	}
	slices.SortFunc(out, func(a, b Unreadable) int { return int(a.Partition - b.Partition) })
	return out
}

// Problem says what keeps the worker from processing every partition it
// owns ("" when nothing does): /readyz answers 503 with it.
func (p *Processor) Problem() string {
	us := p.Unreadable()
	if len(us) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d partition(s) hold data this build cannot read; their commands wait (roll forward to a build that reads them):", len(us))
	for _, u := range us {
		fmt.Fprintf(&b, " partition %d (%s", u.Partition, u.Key)
		if len(u.Fingerprints) > 0 {
			fmt.Fprintf(&b, ", unknown schema fingerprint %s", fingerprintList(u.Fingerprints))
		}
		b.WriteString(");")
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Backoff of the checks of an unreadable partition: the data changes only
// when a build that reads it rewrites it, so checking often is waste.
const (
	unreadableRetryBase = time.Second
	unreadableRetryMax  = time.Minute
)

// unreadableRetry is the wait after the attempts-th check: none after the
// first (it may learn the schemas from the schema topic at once), then
// unreadableRetryBase doubled per check.
func unreadableRetry(attempts int) time.Duration {
	if attempts <= 1 {
		return 0
	}
	d := unreadableRetryBase
	for i := 2; i < attempts && d < unreadableRetryMax; i++ {
		d *= 2
	}
	return min(d, unreadableRetryMax)
}

// asUnreadable returns the unreadable data err is about, if it is.
func asUnreadable(err error) (*UnreadableError, bool) {
	var ue *UnreadableError
	if errors.As(err, &ue) {
		return ue, true
	}
	return nil, false
}

// deferUnreadable takes the rest of r's partition out of the open
// transaction when err is unreadable data (the records before r stay in
// it), rewinding the partition to r and pausing it; resumeReady checks it
// again with a backoff. It reports whether it did.
func (p *Processor) deferUnreadable(ps *partitionState, r *kgo.Record, err error) bool {
	ue, ok := asUnreadable(err)
	if !ok {
		return false
	}
	ps.stopAt = r.Offset
	p.deferPartitions(map[int32]kgo.EpochOffset{ps.p: {Epoch: r.LeaderEpoch, Offset: r.Offset}})
	p.markUnreadable(ps, r.Offset, ue.Key, ue)
	return true
}

// markUnreadable records (or records again, after a failed check) that
// partition ps waits at offset for data it cannot read.
func (p *Processor) markUnreadable(ps *partitionState, offset int64, key string, err error) {
	now := time.Now()
	var fps []uint64
	if ue, ok := asUnreadable(err); ok {
		fps = ue.Fingerprints
	} else {
		fps = unknownFingerprints(err, nil, nil)
	}
	p.mu.Lock()
	u := p.unreadable[ps.p]
	if u == nil {
		if p.unreadable == nil {
			p.unreadable = map[int32]*Unreadable{}
		}
		u = &Unreadable{Partition: ps.p, Since: now}
		p.unreadable[ps.p] = u
	}
	u.Offset, u.Key, u.Fingerprints, u.Err = offset, key, fps, err
	u.Attempts++
	u.learnGen = p.checkGen
	wait := unreadableRetry(u.Attempts)
	u.NextTry = now.Add(wait)
	p.stats.UnreadableDeferrals++
	attempts := u.Attempts
	p.mu.Unlock()
	p.log.Error("partition holds data this build cannot read: its commands wait (other partitions go on); roll forward to a build that reads it",
		"partition", ps.p, "offset", offset, "key", key, "unknown_fingerprints", fingerprintList(fps), "checks", attempts, "next_check_in", wait, "err", err)
}

// unreadableWaiting reports whether a deferred partition must stay paused
// because its unreadable data is not due for a check yet.
func (p *Processor) unreadableWaiting(part int32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.unreadable[part]
	return u != nil && time.Now().Before(u.NextTry) && u.learnGen == p.schemaBook.gen.Load()
}

// recheckUnreadable checks again, outside any transaction, the aggregate
// whose data held the partition back. It reports whether the partition may
// resume; if the data is still unreadable, the partition waits again
// (longer). A snapshot whose state alone is unreadable resumes: its command
// then goes the way of a state rebuild (load.go); a failed rebuild was
// checked by retrying it (resumeReady).
func (p *Processor) recheckUnreadable(ps *partitionState) bool {
	p.mu.Lock()
	u := p.unreadable[ps.p]
	p.mu.Unlock()
	if u == nil {
		return true
	}
	// A newer build may have published the schemas it lacks.
	p.learnSchemas(u.Fingerprints)
	val, ok, err := ps.store.Get([]byte(u.Key))
	if err == nil && ok {
		_, err = p.reg.decodeSnapshot(u.Key, val)
		var se *StateSchemaError
		if errors.As(err, &se) {
			err = nil
		}
		if err != nil {
			err = p.unreadableSnapshot(ps.p, u.Key, val, err)
		}
	}
	if err != nil {
		p.markUnreadable(ps, u.Offset, u.Key, err)
		return false
	}
	p.clearUnreadable(ps.p)
	return true
}

// clearUnreadable forgets that a partition was held back.
func (p *Processor) clearUnreadable(part int32) {
	p.mu.Lock()
	u := p.unreadable[part]
	delete(p.unreadable, part)
	p.mu.Unlock()
	if u != nil {
		p.log.Info("partition's data readable again; resuming", "partition", part, "key", u.Key, "held_for", time.Since(u.Since))
	}
}

// unreadableSnapshot wraps a snapshot decode failure (not a state schema
// change, which a rebuild from events handles) as unreadable data.
func (p *Processor) unreadableSnapshot(part int32, key string, value []byte, err error) error {
	if v, uerr := p.reg.unframe(value); uerr == nil {
		value = v
	}
	known := func(fp uint64) bool { _, ok := p.reg.envelopes.ByFingerprint(fp); return ok }
	return &UnreadableError{Partition: part, Key: key, Fingerprints: unknownFingerprints(err, value, known), Err: err}
}

// unreadableRebuild wraps a failed state rebuild whose events this build
// cannot read as unreadable data.
func unreadableRebuild(part int32, key string, err error) error {
	fps := unknownFingerprints(err, nil, nil)
	var re *schemas.ResolveError
	if len(fps) == 0 && !errors.As(err, &re) {
		return err // not about schemas (a read that failed): retried as it is
	}
	return &UnreadableError{Partition: part, Key: key, Fingerprints: fps, Err: err}
}

// CodePersonalDataUnreadable (REJECTED): the aggregate's personal data
// cannot be opened: its data key is gone from the keys topic without an
// erasure (a tombstone written there; docs/erasure.md). Its commands are
// refused and dead-lettered (replayable once the key is restored); the
// other aggregates of its partition are served.
const CodePersonalDataUnreadable = "personal_data_unreadable"

// KeyLostError is an aggregate whose snapshot holds personal data sealed
// with a key the keys topic no longer has, read after the partition's keys
// were loaded to the end: the loss is permanent, not a key still to come.
type KeyLostError struct {
	Partition int32
	Key       string // the aggregate's snapshot key (the subject)
	Err       error
}

func (e *KeyLostError) Error() string {
	return fmt.Sprintf("partition %d, %s: personal data unreadable: its data key is missing from the keys topic, which was read to its end, and it was not erased (a tombstone in the keys topic?): %v",
		e.Partition, e.Key, e.Err)
}

func (e *KeyLostError) Unwrap() error { return e.Err }

// refuseKeyLost answers and dead-letters a command on an aggregate whose
// data key was lost, when err is that; it reports whether it did.
func (p *Processor) refuseKeyLost(b *batch, r *kgo.Record, meta *commandMeta, base wire.Reply, err error) bool {
	var kl *KeyLostError
	if !errors.As(err, &kl) {
		return false
	}
	base.Status, base.Code = wire.StatusRejected, CodePersonalDataUnreadable
	base.Message = "the aggregate's personal data cannot be read: its data key is missing from the keys topic (not erased); restore the key record, then replay the dead letter"
	p.log.Error("command refused: aggregate's data key lost (its partition goes on)", "partition", r.Partition, "offset", r.Offset, "command", meta.commandID, "key", capText(kl.Key, 200), "err", err)
	p.reply(b, r, meta, base)
	p.deadLetter(b, r, err)
	return true
}
