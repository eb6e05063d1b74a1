package saga

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
)

// Leg names the step of a transfer a saga command is.
type Leg string

// The legs the saga sends.
const (
	LegCredit   Leg = "credit"
	LegComplete Leg = "complete"
	LegRefund   Leg = "refund"
)

// Ref identifies one transfer by its debit event; it travels as the
// correlation id of the saga's commands, for people and audits only: the
// saga never reads replies.
type Ref struct {
	// Source is the debited account; Version the version of its
	// TransferDebited event: together they name the transfer forever.
	Source  string `json:"source"`
	Version int64  `json:"version"`
	// Seq is the transfer's number on the source (TransferDebited.Seq).
	Seq int64 `json:"seq"`
	// TransferID, Target and Amount repeat the debit's fields.
	TransferID string `json:"transferId"`
	Target     string `json:"target"`
	Amount     int64  `json:"amount"`
	Leg        Leg    `json:"leg"`
}

// CommandID is the deterministic command id of a leg: the same debit always
// yields the same ids, so a leg produced twice is deduplicated.
//
// A long source is named by its SHA-256 instead: the processor refuses
// command ids over topology.MaxCommandIDBytes, and an id quoting a source of
// a few KB (an account id is any Kafka key) had every leg of its transfers
// refused and re-sent forever. Sources up to maxQuotedSource keep the ids
// they always had (a leg re-sent after an upgrade is still deduplicated).
func (r Ref) CommandID() string {
	src := strconv.Quote(r.Source)
	if len(src) > maxQuotedSource {
		src = sourceDigest(r.Source)
	}
	return "transfer:" + src + ":" + strconv.FormatInt(r.Version, 10) + ":" + string(r.Leg)
}

// maxQuotedSource bounds the quoted source in a leg's command id, well
// under topology.MaxCommandIDBytes.
const maxQuotedSource = 512

// DecodeRef parses a correlation id made by the saga. Anything else (a
// reply that is not the saga's, garbage) is an error.
func DecodeRef(b []byte) (Ref, error) {
	var r Ref
	if err := json.Unmarshal(b, &r); err != nil {
		return Ref{}, fmt.Errorf("saga: correlation id: %w", err)
	}
	switch {
	case r.Leg != LegCredit && r.Leg != LegComplete && r.Leg != LegRefund:
		return Ref{}, fmt.Errorf("saga: correlation id: unknown leg %q", r.Leg)
	case r.Source == "" || r.Target == "" || r.TransferID == "":
		return Ref{}, errors.New("saga: correlation id: missing source, target or transfer id")
	case r.Version < 1 || r.Amount < 1 || r.Seq < 0:
		return Ref{}, fmt.Errorf("saga: correlation id: version %d, amount %d, seq %d", r.Version, r.Amount, r.Seq)
	}
	return r, nil
}

// encode is the correlation id of a leg. A long source is named by its
// SHA-256 there too: the leg's value carries the source already, and a
// second copy made the credit leg of a source of a few hundred KB larger
// than a command may be (never sent: its money stayed pending).
func (r Ref) encode() []byte {
	if len(strconv.Quote(r.Source)) > maxQuotedSource {
		r.Source = sourceDigest(r.Source)
	}
	b, _ := json.Marshal(r) // a struct of strings and ints always marshals
	return b
}

// sourceDigest names a long source in command and correlation ids.
func sourceDigest(source string) string {
	sum := sha256.Sum256([]byte(source))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// step is one command the saga sends.
type step struct {
	ref Ref
	to  string // the account the command is for
	cmd aggregates.Command
	key pendingKey // the transfer, for a re-drive
}

// pendingKey names a transfer on its source: the source, its Seq there and
// its id (Seq 0 for transfers debited before Seqs existed, told apart by
// id).
type pendingKey struct {
	source string
	seq    int64
	id     string
}

// pendingTransfer is a transfer this worker saw debited (on one of its
// partitions) and not yet ended.
type pendingTransfer struct {
	ref       Ref // its credit leg
	partition int32
	since     time.Time // the debit's timestamp
	next      time.Time // when to re-drive it
	// decided is the completion or refund the target's decision calls for,
	// once this worker saw it: what a re-drive sends instead of the credit
	// (which the target would refuse as decided already).
	decided *step
}

// transferEvents are the account events the saga reacts to; one of them it
// cannot decode stops its partition.
var transferEvents = map[string]bool{
	account.TransferDebited{}.EventType():       true,
	account.TransferCredited{}.EventType():      true,
	account.TransferCreditRefused{}.EventType(): true,
	account.TransferCompleted{}.EventType():     true,
	account.TransferRefunded{}.EventType():      true,
}

// react is the saga's logic: the commands one event causes. Only events
// drive it: the processor writes them, once, for commands it accepted, so
// nothing a client writes can move a transfer on. An error is an event that
// may be a transfer's and cannot be decoded: the caller stops there.
func (s *Saga) react(r *kgo.Record, b *batchStats) ([]step, error) {
	env, evs, err := s.reg.DecodeEvents(r.Value)
	if err != nil {
		if env.AggregateType != "" && (env.AggregateType != account.Name || !transferEvents[env.EventType]) {
			// Another aggregate's event, or an account event no transfer
			// needs: not ours to judge.
			return nil, nil
		}
		return nil, fmt.Errorf("saga: event %s of %s %q at version %d: %w", env.EventType, env.AggregateType, env.AggregateID, env.Version, err)
	}
	if env.AggregateType != account.Name {
		return nil, nil
	}
	var out []step
	for _, ev := range evs {
		switch e := ev.(type) {
		case account.TransferDebited:
			b.Debits++
			ref := Ref{Source: env.AggregateID, Version: env.Version, Seq: e.Seq, TransferID: e.TransferID, Target: e.To, Amount: e.Amount, Leg: LegCredit}
			k := pendingKey{env.AggregateID, e.Seq, e.TransferID}
			s.track(k, ref, r)
			out = append(out, creditStep(ref, k))
		case account.TransferCredited:
			// The target took the money: end the transfer on its source.
			b.Completed++
			st := completeStep(e.From, env.AggregateID, e)
			s.decide(st)
			out = append(out, st)
		case account.TransferCreditRefused:
			// The target recorded that it cannot take it: give it back.
			b.Refunded++
			st := refundStep(env.AggregateID, e)
			s.decide(st)
			out = append(out, st)
		case account.TransferCompleted:
			s.untrack(pendingKey{env.AggregateID, e.Seq, e.TransferID}, r.Partition)
		case account.TransferRefunded:
			s.untrack(pendingKey{env.AggregateID, e.Seq, e.TransferID}, r.Partition)
		}
	}
	return out, nil
}

func creditStep(ref Ref, k pendingKey) step {
	return step{ref: ref, to: ref.Target, key: k, cmd: account.CreditForTransfer{
		TransferID: ref.TransferID, From: ref.Source, DebitVersion: ref.Version, Amount: ref.Amount, Seq: ref.Seq}}
}

// completeStep is the completion a credit calls for; its command id is
// the same whenever it is sent (reaction, re-drive, replay).
func completeStep(source, target string, e account.TransferCredited) step {
	ref := Ref{Source: source, Version: e.DebitVersion, Seq: e.Seq, TransferID: e.TransferID, Target: target, Amount: e.Amount, Leg: LegComplete}
	return step{ref: ref, to: source, key: pendingKey{source, e.Seq, e.TransferID},
		cmd: account.CompleteTransfer{TransferID: e.TransferID, Seq: e.Seq}}
}

// refundStep is the refund a refusal by target calls for.
func refundStep(target string, e account.TransferCreditRefused) step {
	ref := Ref{Source: e.From, Version: e.DebitVersion, Seq: e.Seq, TransferID: e.TransferID, Target: target, Amount: e.Amount, Leg: LegRefund}
	return step{ref: ref, to: e.From, key: pendingKey{e.From, e.Seq, e.TransferID},
		cmd: account.RefundTransfer{TransferID: e.TransferID, Reason: e.Code + ": " + e.Reason, Seq: e.Seq}}
}

// decide records the target's decision on the transfer this worker tracks
// (when it owns the source's partition), so that a re-drive sends the leg
// the transfer now waits for. While a partition is read back, the
// transfer may not be tracked yet: the decision is kept for the rebuild.
func (s *Saga) decide(st step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pending[st.key]; p != nil {
		if p.decided == nil {
			p.decided = &st
			p.next = s.now().Add(s.cfg.RedriveAfter)
		}
		return
	}
	if len(s.rebuilds) > 0 {
		s.decided[st.key] = st
	}
}

// track remembers a debited transfer until its end is seen.
func (s *Saga) track(k pendingKey, ref Ref, r *kgo.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[k] != nil {
		return
	}
	since, now := r.Timestamp, s.now()
	if since.IsZero() || since.After(now) {
		since = now
	}
	// An old debit seen again (a replay) gets a full period before its
	// first re-drive: its chain is probably on its way.
	s.pending[k] = &pendingTransfer{ref: ref, partition: r.Partition, since: since, next: now.Add(s.cfg.RedriveAfter)}
}

func (s *Saga) untrack(k pendingKey, partition int32) {
	s.mu.Lock()
	delete(s.pending, k)
	delete(s.decided, k)
	if r := s.rebuilds[partition]; r != nil {
		r.ended[k] = true
	}
	s.mu.Unlock()
}

// due returns the legs to send again: transfers pending longer than
// RedriveAfter since their last drive get the leg they wait for, with its
// command id. Undecided (as far as this worker saw): the credit; the
// target deduplicates it, or refuses it as decided already, if the first
// one arrived; if it never did (lost, or dead-lettered), this one decides.
// Credited or refused: the completion or refund; the source deduplicates
// it, or (beyond the dedupe window) refuses it as unknown_transfer once the
// transfer ended, with no effect; if it never arrived, this one ends it.
func (s *Saga) due() []step {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []step
	for k, p := range s.pending {
		if _, stalled := s.stalled[p.partition]; stalled || now.Before(p.next) {
			continue
		}
		p.next = now.Add(s.cfg.RedriveAfter)
		st := creditStep(p.ref, k)
		if p.decided != nil {
			st = *p.decided
		}
		s.log.Warn("transfer pending too long: leg sent again", "leg", st.ref.Leg, "source", k.source, "seq", k.seq, "transfer", k.id, "target", p.ref.Target, "age", now.Sub(p.since))
		out = append(out, st)
	}
	return out
}

// forget drops what the worker knew of partitions it no longer owns.
func (s *Saga) forget(_ context.Context, cl *kgo.Client, lost map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gone := map[int32]bool{}
	var resume []int32
	for _, p := range lost[s.cfg.Events] {
		gone[p] = true
		delete(s.rebuilds, p)
		if st := s.stalled[p]; st != nil {
			if st.paused {
				resume = append(resume, p)
			}
			delete(s.stalled, p)
		}
	}
	for k, p := range s.pending {
		if gone[p.partition] {
			delete(s.pending, k)
		}
	}
	if len(resume) > 0 {
		// Paused is the client's state, not the assignment's: a partition
		// assigned here again must be read.
		cl.ResumeFetchPartitions(map[string][]int32{s.cfg.Events: resume})
	}
}
