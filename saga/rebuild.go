package saga

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
)

// rebuilding is a partition whose pending transfers before its committed
// offset are being read back (see rebuild); ended collects the transfers
// the live consumer saw end meanwhile, so the rebuild does not add them.
type rebuilding struct {
	ended map[pendingKey]bool
}

// assigned starts a rebuild of each newly assigned events partition.
func (s *Saga) assigned(ctx context.Context, base []kgo.Opt) func(context.Context, *kgo.Client, map[string][]int32) {
	return func(_ context.Context, _ *kgo.Client, got map[string][]int32) {
		for _, p := range got[s.cfg.Events] {
			s.mu.Lock()
			r := &rebuilding{ended: map[pendingKey]bool{}}
			s.rebuilds[p] = r
			s.mu.Unlock()
			go func() {
				if err := s.rebuild(ctx, base, p, r); err != nil && ctx.Err() == nil {
					s.log.Warn("could not read back the pending transfers of a partition; those debited before its committed offset are not re-driven by this worker",
						"partition", p, "err", err)
				}
			}()
		}
	}
}

// rebuild reads an events partition from its start up to the group's
// committed offset (where the live consumer starts) and tracks the transfers
// debited there and not ended, so that a worker that just got the partition
// re-drives them too. It costs one read of the partition's history per
// assignment.
func (s *Saga) rebuild(ctx context.Context, base []kgo.Opt, p int32, r *rebuilding) error {
	defer func() {
		s.mu.Lock()
		if s.rebuilds[p] == r {
			delete(s.rebuilds, p)
		}
		if len(s.rebuilds) == 0 {
			clear(s.decided)
		}
		s.mu.Unlock()
	}()
	adm, err := kgo.NewClient(base...)
	if err != nil {
		return err
	}
	defer adm.Close()
	committed, err := kadm.NewClient(adm).FetchOffsets(ctx, s.cfg.Group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	c, ok := committed.Lookup(s.cfg.Events, p)
	if !ok || c.Err != nil || c.At <= 0 {
		return nil
	}
	end := c.At
	cl, err := kgo.NewClient(append(base,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.cfg.Events: {p: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords())...)
	if err != nil {
		return err
	}
	defer cl.Close()
	found := map[pendingKey]*pendingTransfer{}
	// The decisions read back: the target's partition may be this one.
	decided := map[pendingKey]step{}
	for done := false; !done; {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		fs := cl.PollFetches(rctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fs.Err0(); err != nil {
			return fmt.Errorf("read %s[%d]: %w", s.cfg.Events, p, err)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			if done || rec.Offset >= end {
				done = true
				return
			}
			done = rec.Offset >= end-1
			if rec.Attrs.IsControl() {
				return
			}
			env, evs, err := s.reg.DecodeEvents(rec.Value)
			if err != nil || env.AggregateType != account.Name {
				return // the live consumer stopped at any that matters
			}
			for _, ev := range evs {
				switch e := ev.(type) {
				case account.TransferDebited:
					ref := Ref{Source: env.AggregateID, Version: env.Version, Seq: e.Seq, TransferID: e.TransferID, Target: e.To, Amount: e.Amount, Leg: LegCredit}
					found[pendingKey{env.AggregateID, e.Seq, e.TransferID}] = &pendingTransfer{ref: ref, partition: p, since: rec.Timestamp}
				case account.TransferCredited:
					st := completeStep(e.From, env.AggregateID, e)
					decided[st.key] = st
				case account.TransferCreditRefused:
					st := refundStep(env.AggregateID, e)
					decided[st.key] = st
				case account.TransferCompleted:
					delete(found, pendingKey{env.AggregateID, e.Seq, e.TransferID})
				case account.TransferRefunded:
					delete(found, pendingKey{env.AggregateID, e.Seq, e.TransferID})
				}
			}
		})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rebuilds[p] != r {
		return nil // revoked meanwhile
	}
	now := s.now()
	for k, st := range decided {
		if t := s.pending[k]; t != nil && t.decided == nil {
			t.decided = &st
		} else if found[k] == nil && len(s.rebuilds) > 1 {
			s.decided[k] = st // maybe a transfer another rebuild finds
		}
	}
	for k, t := range found {
		if r.ended[k] || s.pending[k] != nil {
			continue
		}
		if st, ok := decided[k]; ok {
			t.decided = &st
		} else if st, ok := s.decided[k]; ok {
			t.decided = &st
		}
		// Due at once if it already waited long enough.
		t.next = t.since.Add(s.cfg.RedriveAfter)
		s.pending[k] = t
	}
	if len(found) > 0 {
		s.log.Info("pending transfers read back", "partition", p, "pending", len(found), "at", now)
	}
	return nil
}
