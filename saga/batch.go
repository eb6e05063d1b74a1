package saga

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// Backoff of a partition stopped at an event the saga cannot decode: it
// doubles from stallMin up to stallMax between retries.
const (
	stallMin = 500 * time.Millisecond
	stallMax = 30 * time.Second
)

// stall is a partition stopped at an event the saga cannot decode.
type stall struct {
	offset int64
	err    error
	wait   time.Duration
	until  time.Time
	paused bool
}

// batchStats is what one transaction did; added to Stats when it commits.
type batchStats struct {
	mu  sync.Mutex
	err error
	Stats
}

func (b *batchStats) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *batchStats) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
}

// poison is the first event of a partition the saga cannot decode.
type poison struct {
	offset int64
	err    error
}

// runBatch reacts to the polled events and sends the due re-drives, in one
// transaction with the consumed offsets. A partition holding an event the
// saga cannot decode aborts the whole transaction (its offset must not move
// past the event, and an aborted session rewinds every partition to its
// committed offset), and is paused with a backoff, so that the others go on
// without it from the next batch.
func (s *Saga) runBatch(ctx context.Context, sess *kgo.GroupTransactSession, partitions int32, fetches kgo.Fetches, redrive []step) error {
	if err := sess.Begin(); err != nil {
		if topology.FencedError(err) {
			return fmt.Errorf("saga: begin transaction: %w", err)
		}
		// franz-go refuses to begin once an End failed the producer id
		// with an error it cannot recover from (INVALID_TXN_STATE, say).
		return fmt.Errorf("%w: begin transaction: %w", errRecreateSession, err)
	}
	b := &batchStats{}
	send := func(st step) {
		rec, err := s.command(st, partitions)
		if err != nil {
			b.fail(err)
			return
		}
		if n := legBytes(rec); n > maxLegBytes {
			// Produced, it would fail every batch (oversize.go).
			s.log.Error("transfer leg too large to send: the transfer stays pending (kcqrs transfers lists it)",
				"leg", st.ref.Leg, "bytes", n, "limit", maxLegBytes, "source_bytes", len(st.ref.Source),
				"target_bytes", len(st.ref.Target), "transfer_id_bytes", len(st.ref.TransferID))
			return
		}
		sess.Produce(ctx, rec, func(r *kgo.Record, err error) {
			if err != nil {
				b.fail(fmt.Errorf("produce %s: %w", header(r, wire.HeaderCommandID), err))
			}
		})
	}
	poisoned := map[int32]poison{}
	fetches.EachPartition(func(ft kgo.FetchTopicPartition) {
		for _, r := range ft.Records {
			steps, err := s.react(r, b)
			if err != nil {
				poisoned[r.Partition] = poison{r.Offset, err}
				return
			}
			for _, st := range steps {
				send(st)
			}
		}
	})
	for _, st := range redrive {
		b.Redriven++
		send(st)
	}
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.TransactionTimeout)
	defer cancel()
	// Flush first so that every produce result is known before deciding:
	// offsets must never commit without all the commands they caused.
	if err := sess.Client().Flush(endCtx); err != nil {
		b.fail(fmt.Errorf("flush: %w", err))
	}
	try := kgo.TryCommit
	switch {
	case len(poisoned) > 0:
		try = kgo.TryAbort
	case b.failed() != nil:
		try = kgo.TryAbort
		s.log.Error("aborting transaction", "err", b.failed())
	}
	committed, err := sess.End(endCtx, try)
	s.mu.Lock()
	s.stats.Transactions++
	if committed {
		fetches.EachPartition(func(ft kgo.FetchTopicPartition) {
			if len(ft.Records) > 0 {
				delete(s.stalled, ft.Partition) // got past its poison
			}
		})
		s.stats.Debits += b.Debits
		s.stats.Completed += b.Completed
		s.stats.Refunded += b.Refunded
		s.stats.Redriven += b.Redriven
	} else {
		s.stats.Aborted++
		// The re-drives were not sent: due again at once.
		for _, st := range redrive {
			if p := s.pending[st.key]; p != nil {
				p.next = time.Time{}
			}
		}
	}
	s.mu.Unlock()
	if len(poisoned) > 0 {
		s.stop(sess.Client(), poisoned)
	}
	if err != nil && topology.FencedError(err) {
		return fmt.Errorf("saga: end transaction: %w", err)
	}
	if err != nil {
		// Any other error leaves the commit unknown, as in the processor
		// (topology/txn.go). franz-go rewound the session to the committed
		// offsets, so the events come again: the legs they cause have
		// deterministic command ids (a leg the broker did commit is
		// deduplicated by its target), and the saga's own state is derived
		// from committed events only (track and untrack are idempotent), so
		// nothing the batch touched needs undoing. The batch comes again
		// after a backoff; a producer left unusable fails the next Begin,
		// which recreates the session (Run).
		s.endFailed = true
		s.log.Warn("transaction not committed: end failed; the events will be consumed again", "err", err, "retriable", kerr.IsRetriable(err))
		// franz-go keeps the failed transaction for a TryAbort retry,
		// which heals the producer when it can; otherwise Begin fails next.
		if aerr := sess.Client().EndTransaction(endCtx, kgo.TryAbort); aerr != nil {
			s.log.Warn("abort after a failed end", "err", aerr)
		}
	}
	return nil
}

// stop pauses the poisoned partitions with a growing backoff. Loud: an
// error log per stop, Stats.DecodeErrors, Stats.Stalled.
func (s *Saga) stop(cl *kgo.Client, poisoned map[int32]poison) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ps []int32
	for p, why := range poisoned {
		st := s.stalled[p]
		if st == nil {
			st = &stall{}
			s.stalled[p] = st
		}
		st.offset, st.err = why.offset, why.err
		st.wait = min(max(2*st.wait, stallMin), stallMax)
		st.until, st.paused = s.now().Add(st.wait), true
		s.stats.DecodeErrors++
		ps = append(ps, p)
		s.log.Error("transfer event the saga cannot decode: its partition stops here (never skipped) and is retried",
			"topic", s.cfg.Events, "partition", p, "offset", why.offset, "retry_in", st.wait, "err", why.err)
	}
	cl.PauseFetchPartitions(map[string][]int32{s.cfg.Events: ps})
}

// resumeStalled resumes the paused partitions whose backoff has passed:
// they are read again from their committed offset.
func (s *Saga) resumeStalled(cl *kgo.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ps []int32
	now := s.now()
	for p, st := range s.stalled {
		if st.paused && !now.Before(st.until) {
			st.paused = false
			ps = append(ps, p)
		}
	}
	// A partition stays counted as stalled until a batch with its events
	// commits, or it is revoked.
	if len(ps) > 0 {
		cl.ResumeFetchPartitions(map[string][]int32{s.cfg.Events: ps})
	}
}

// command builds the record of one step.
func (s *Saga) command(st step, partitions int32) (*kgo.Record, error) {
	val, err := s.codec[st.cmd.CommandType()].Encode(st.cmd)
	if err != nil {
		return nil, fmt.Errorf("saga: encode %s: %w", st.cmd.CommandType(), err)
	}
	id, typ := st.ref.CommandID(), st.cmd.CommandType()
	return &kgo.Record{
		Topic:     s.cfg.Commands,
		Partition: topology.PartitionFor([]byte(st.to), partitions),
		Key:       []byte(st.to),
		Value:     val,
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderSignature, Value: topology.SignCommand(s.cfg.SigningKey, id, account.Name, st.to, typ, val)},
			{Key: wire.HeaderCommandID, Value: []byte(id)},
			{Key: wire.HeaderCommandType, Value: []byte(st.cmd.CommandType())},
			{Key: wire.HeaderAggregateType, Value: []byte(account.Name)},
			{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeAvro)},
			{Key: wire.HeaderCorrelationID, Value: st.ref.encode()},
		},
	}, nil
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
