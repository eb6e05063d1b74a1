package topology

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/wire"
)

const (
	// CodeOutputRefused (INTERNAL_ERROR): the broker refused an output of
	// the command deterministically (too large for its limits, invalid
	// record, not authorized, invalid topic) even when it was the only
	// command of its transaction; it had no effect and is dead-lettered.
	CodeOutputRefused = "output_refused"
)

// produceError is a record the broker (or the client) refused.
type produceError struct {
	topic     string
	partition int32
	err       error
}

func (e *produceError) Error() string {
	return fmt.Sprintf("produce to %s[%d]: %v", e.topic, e.partition, e.err)
}
func (e *produceError) Unwrap() error { return e.err }

// deterministic reports whether a produce error fails the same way every
// time the same record is produced: retrying the batch cannot help, the
// command must be isolated. Anything else is treated as transient.
func deterministic(err error) bool {
	for _, k := range []*kerr.Error{
		kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord,
		kerr.CorruptMessage, kerr.InvalidTopicException, kerr.TopicAuthorizationFailed,
		kerr.ClusterAuthorizationFailed, kerr.InvalidRequiredAcks, kerr.UnsupportedForMessageFormat,
	} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// abortReason names why a batch failed, for "the same reason twice".
func abortReason(err error) string {
	if err == nil {
		return "not committed"
	}
	var pe *produceError
	if errors.As(err, &pe) {
		code := "other"
		var ke *kerr.Error
		if errors.As(pe.err, &ke) {
			code = ke.Message
		}
		return "produce " + pe.topic + "/" + strconv.Itoa(int(pe.partition)) + " " + code
	}
	return err.Error()
}

// isolation is the mode the run loop enters when batches aborted twice for
// the same reason (since the last commit): the records of that batch are
// re-run one per transaction, so the one that fails is known; if it fails alone deterministically it is
// answered and dead-lettered in a transaction of its own (poison), and
// everything else goes on.
type isolation struct {
	reason string
	// left: offsets per partition up to which records are run one at a
	// time (the end of the batch that failed).
	left map[int32]int64
	// poison is the record known to fail alone, by partition and offset.
	poison map[int32]int64
	cause  map[int32]error
	// refused counts, per output of the poison record, the attempts the
	// broker refused: a refused reply is left out from then on (a
	// dead letter can still be written), a refused dead letter first loses
	// its value (the value may be what cannot be written), then is left
	// out (the reply can still be written). Only when both are refused is
	// the command skipped with just its offset, so nothing loops, and
	// nothing that can be written is left out.
	refused map[int32]*poisonRefusals
}

type poisonRefusals struct {
	reply       bool
	deadLetters int
}

func newIsolation(reason string) *isolation {
	return &isolation{reason: reason, left: map[int32]int64{}, poison: map[int32]int64{},
		cause: map[int32]error{}, refused: map[int32]*poisonRefusals{}}
}

// noteRefused records which output of the poison record the broker refused.
func (iso *isolation) noteRefused(part int32, deadLetters string, err error) {
	rf := iso.refused[part]
	if rf == nil {
		rf = &poisonRefusals{}
		iso.refused[part] = rf
	}
	var pe *produceError
	if errors.As(err, &pe) && pe.topic == deadLetters {
		rf.deadLetters++
	} else {
		rf.reply = true // its only other output
	}
}

// batchLimit is how many records the next transaction takes.
func (p *Processor) batchLimit() int {
	if p.isolate != nil {
		return 1
	}
	return p.cfg.MaxBatch
}

// noteOutcome drives isolation from the outcome of a batch.
func (p *Processor) noteOutcome(b *batch, n int, committed bool) {
	if committed {
		if p.isolate != nil {
			for _, r := range b.records {
				if off, ok := p.isolate.poison[r.Partition]; ok && off == r.Offset {
					delete(p.isolate.poison, r.Partition)
					delete(p.isolate.refused, r.Partition)
					p.mu.Lock()
					p.stats.IsolatedDeadLetters++
					p.mu.Unlock()
				}
			}
			// Leave isolation once every record of the failed batch ran.
			done := true
			for _, r := range b.records {
				if end, ok := p.isolate.left[r.Partition]; ok && r.Offset+1 >= end {
					delete(p.isolate.left, r.Partition)
				}
			}
			p.mu.Lock()
			for part := range p.isolate.left {
				if p.assigned[part] == 0 {
					delete(p.isolate.left, part) // not ours any more
				}
			}
			p.mu.Unlock()
			for range p.isolate.left {
				done = false
			}
			if done {
				p.log.Info("isolation done; back to full batches", "reason", p.isolate.reason)
				p.isolate = nil
			}
		}
		return
	}
	err := b.failed()
	reason := abortReason(err)
	if p.isolate != nil && n == 1 && len(b.records) == 1 && err != nil {
		r := b.records[0]
		if off, ok := p.isolate.poison[r.Partition]; ok && off == r.Offset {
			if deterministic(err) {
				p.isolate.noteRefused(r.Partition, p.cfg.Topics.DeadLetters, err)
			}
		} else if deterministic(err) {
			p.isolate.poison[r.Partition] = r.Offset
			p.isolate.cause[r.Partition] = err
			p.log.Warn("command fails alone deterministically; it will be answered and dead-lettered alone", "partition", r.Partition, "offset", r.Offset, "err", err)
		}
		p.lastAbort = reason
		return
	}
	// "The same reason twice" within the current run of aborts, not only
	// in a row: deferral splits the partitions of a failed batch into
	// batches of their own, so two commands refused on two partitions
	// make the reasons alternate, and a consecutive-only rule would never
	// isolate them (every partition blocked, backing off for ever).
	seen := p.abortReasons[reason]
	if err != nil {
		if p.abortReasons == nil {
			p.abortReasons = map[string]bool{}
		}
		p.abortReasons[reason] = true
	}
	if p.isolate == nil && seen && err != nil && len(b.records) > 1 {
		iso := newIsolation(reason)
		for _, r := range b.records {
			if r.Offset+1 > iso.left[r.Partition] {
				iso.left[r.Partition] = r.Offset + 1
			}
		}
		p.isolate = iso
		p.log.Warn("batch aborted twice for the same reason; re-running its records one per transaction", "reason", reason, "records", len(b.records))
	} else if p.isolate == nil && seen && err != nil && len(b.records) == 1 && deterministic(err) {
		// A one-record batch failing the same way twice: that record.
		r := b.records[0]
		iso := newIsolation(reason)
		iso.left[r.Partition], iso.poison[r.Partition], iso.cause[r.Partition] = r.Offset+1, r.Offset, err
		p.isolate = iso
	}
	p.lastAbort = reason
}

// isolatedPoison answers and dead-letters r alone when it is the record
// known to fail deterministically, instead of handling it again. The reply
// is a small error reply; the dead-letter copy keeps the headers and points
// at the original offset, without the value (which may be what the broker
// refused).
func (p *Processor) isolatedPoison(b *batch, ps *partitionState, r *kgo.Record) bool {
	if p.isolate == nil {
		return false
	}
	off, ok := p.isolate.poison[r.Partition]
	if !ok || off != r.Offset {
		p.mu.Lock()
		p.stats.Isolated++
		p.mu.Unlock()
		return false
	}
	cause := p.isolate.cause[r.Partition]
	rf := p.isolate.refused[r.Partition]
	if rf == nil {
		rf = &poisonRefusals{}
	}
	if rf.reply && rf.deadLetters >= 2 {
		// Even a bare dead letter and an error reply cannot be written:
		// skip the command (its offset commits), say so loudly.
		p.log.Error("command skipped: neither its outputs, nor an error reply, nor a dead letter could be written", "partition", r.Partition, "offset", r.Offset, "err", cause)
		return true
	}
	meta, _ := parseCommandMeta(r, p.cfg.Topics.Replies)
	rep := wire.Reply{CommandID: meta.commandID, AggregateType: meta.aggregateType, AggregateID: meta.aggregateID,
		Status: wire.StatusInternalError, Code: CodeOutputRefused,
		Message: wire.Truncate("the broker refused an output of this command: "+cause.Error(), 512)}
	if p.cfg.replyTopicRefusal(meta.reply.topic) != "" {
		meta.reply.topic, meta.reply.partition = p.cfg.Topics.Replies, -1
	}
	// Answer on the default reply topic when the refused output may be the
	// reply itself.
	var pe *produceError
	if errors.As(cause, &pe) && pe.topic == meta.reply.topic {
		meta.reply.topic, meta.reply.partition = p.cfg.Topics.Replies, -1
	}
	if rf.reply {
		p.dropReply(r, &meta, "the broker refused the error reply of a command whose output was refused")
	} else {
		p.reply(b, r, &meta, rep)
	}
	if rf.deadLetters >= 2 {
		p.log.Error("command answered but not dead-lettered: the broker refused its dead letter", "partition", r.Partition, "offset", r.Offset, "command", meta.commandID, "err", cause)
		return true
	}
	// The value goes along unless it (or the dead letter itself) was what
	// the broker refused: then the original stays at topic/partition/offset.
	p.produceDeadLetter(b, r, cause, rf.deadLetters == 0 && (pe == nil || pe.topic != p.cfg.Topics.DeadLetters))
	p.log.Warn("command dead-lettered alone: an output was refused deterministically", "partition", r.Partition, "offset", r.Offset, "command", meta.commandID, "err", cause)
	return true
}
