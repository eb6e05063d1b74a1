package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/internal/logread"
)

// IndexerConfig configures an Indexer.
type IndexerConfig struct {
	// Index is where entries go. Required.
	Index *Index
	// Topic is the events topic. Default "events".
	Topic string
	// ClientOpts connect to Kafka (seed brokers, TLS, SASL). Required:
	// at least kgo.SeedBrokers. The indexer adds its own consume options
	// (none: it issues its own read_committed fetches).
	ClientOpts []kgo.Opt
	// Partitions to index. Nil: every partition of Topic.
	Partitions []int32
	// Interval is how long the indexer waits after a round that found
	// less than a backlog. Longer means fewer, larger reads (less CPU
	// taken from the processor: each round costs a few requests per
	// partition whatever it finds) and a longer unindexed tail for
	// readers to scan (reads stay exact). Default 500ms.
	Interval time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Indexer keeps an Index caught up with the events topic: it reads every
// partition it covers read_committed, from the partition's checkpoint, and
// writes each polled batch of records with the new checkpoint in one Pebble
// batch. It is not a consumer group member (no offsets are committed to
// Kafka, nothing to rebalance): the checkpoint in the index is the only
// position, so it survives a SIGKILL (the unwritten tail is read again,
// which is idempotent) and any rebalance of the processors.
type Indexer struct {
	cfg IndexerConfig
	log *slog.Logger

	poke chan struct{} // Poke: start the next round now

	mu      sync.Mutex
	desc    map[int32]cachedDesc // each partition's, kept between rounds
	changed chan struct{}        // closed and replaced after every Apply
	stats   IndexerStats
}

// IndexerStats counts what an Indexer did since it started.
type IndexerStats struct {
	Records int64 // records read
	Indexed int64 // events written to the index
	Skipped int64 // records without kcqrs event headers
	Batches int64 // Pebble batches written
}

// NewIndexer validates cfg.
func NewIndexer(cfg IndexerConfig) (*Indexer, error) {
	var errs []error
	if cfg.Index == nil {
		errs = append(errs, errors.New("history: IndexerConfig.Index is required"))
	}
	if len(cfg.ClientOpts) == 0 {
		errs = append(errs, errors.New("history: IndexerConfig.ClientOpts is required (at least kgo.SeedBrokers)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Topic == "" {
		cfg.Topic = "events"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	return &Indexer{cfg: cfg, log: cfg.Logger, changed: make(chan struct{}), desc: map[int32]cachedDesc{}, poke: make(chan struct{}, 1)}, nil
}

// Stats returns the counters.
func (ix *Indexer) Stats() IndexerStats {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.stats
}

// partitionsOf returns the partitions to index and the topic's id.
func partitionsOf(ctx context.Context, cl *kgo.Client, topic string, want []int32) ([]int32, [16]byte, error) {
	id, n, err := topicMeta(ctx, cl, topic)
	if err != nil {
		return nil, id, err
	}
	if want != nil {
		return want, id, nil
	}
	parts := make([]int32, n)
	for i := range parts {
		parts[i] = int32(i)
	}
	return parts, id, nil
}

// topicMeta asks a broker for the topic's id and partition count. A raw
// request, not kadm's Metadata: that one is answered from the client's
// cache, which keeps "unknown topic" for a while after the topic is created.
func topicMeta(ctx context.Context, cl *kgo.Client, topic string) ([16]byte, int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return [16]byte{}, 0, fmt.Errorf("history: metadata of %s: %w", topic, err)
	}
	for _, rt := range resp.Topics {
		if rt.Topic == nil || *rt.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			return [16]byte{}, 0, fmt.Errorf("history: topic %s: %w", topic, err)
		}
		if len(rt.Partitions) == 0 {
			return [16]byte{}, 0, fmt.Errorf("history: topic %s has no partitions yet", topic)
		}
		return rt.TopicID, int32(len(rt.Partitions)), nil
	}
	return [16]byte{}, 0, fmt.Errorf("history: topic %s: %w", topic, kerr.UnknownTopicOrPartition)
}

// Run indexes until ctx ends (it returns nil then) or an error that
// retrying cannot fix. Each round reads every covered partition from its
// checkpoint to its last stable offset (internal/logread: the end is the
// fetch position, so the checkpoint moves past transaction markers and
// aborted batches too), then waits Interval unless it found a backlog.
func (ix *Indexer) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(ix.cfg.ClientOpts...)
	if err != nil {
		return fmt.Errorf("history: client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var parts []int32
	for warned := false; ; {
		// The topic may not exist yet (the processor creates it when it
		// starts): wait for it.
		if parts, err = ix.prepare(ctx, cl); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if !warned {
			ix.log.Info("history indexer: waiting for the events topic", "topic", ix.cfg.Topic, "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	for {
		// Each round checks the topic again: one deleted and created
		// again (another id) resets the index, and partitions added
		// since are indexed too.
		if p, perr := ix.prepare(ctx, cl); perr == nil {
			parts = p
		}
		n, err := ix.round(ctx, cl, adm, parts)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errReset) {
			continue
		}
		if err != nil {
			ix.log.Warn("history indexer: round failed; retrying", "err", err)
		}
		if n >= applyEvery && err == nil {
			continue // a backlog: read on at once
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ix.poke:
		case <-time.After(ix.cfg.Interval):
		}
	}
}

// CatchUp indexes every covered partition up to its last stable offset as
// of the call, then returns (kcqrs history reindex).
func (ix *Indexer) CatchUp(ctx context.Context) error {
	cl, err := kgo.NewClient(ix.cfg.ClientOpts...)
	if err != nil {
		return fmt.Errorf("history: client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	parts, err := ix.prepare(ctx, cl)
	if err != nil {
		return err
	}
	for {
		if _, err = ix.round(ctx, cl, adm, parts); !errors.Is(err, errReset) {
			return err
		}
	}
}

// prepare resolves the partitions and resets an index built from another
// incarnation of the topic.
func (ix *Indexer) prepare(ctx context.Context, cl *kgo.Client) ([]int32, error) {
	parts, topicID, err := partitionsOf(ctx, cl, ix.cfg.Topic, ix.cfg.Partitions)
	if err != nil {
		return nil, err
	}
	stored, err := ix.cfg.Index.TopicID()
	if err != nil {
		return nil, err
	}
	if topicID == ([16]byte{}) && stored != ([16]byte{}) {
		// A broker that did not say the topic's id: nothing to compare.
		return parts, nil
	}
	if stored != topicID {
		// A new index, or the events topic was recreated: its offsets
		// mean nothing any more.
		if stored != ([16]byte{}) {
			ix.log.Warn("history index belongs to another events topic (recreated?); rebuilding it", "topic", ix.cfg.Topic)
		}
		if err := ix.cfg.Index.Reset(topicID); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

// errReset: a round reset the index; the next one reads from the start.
var errReset = errors.New("history: index reset; reading again")

// applyEvery bounds the records of one Pebble batch.
const applyEvery = 4096

// round reads each partition from its checkpoint to its last stable
// offset and returns the number of records read.
func (ix *Indexer) round(ctx context.Context, cl *kgo.Client, adm *kadm.Client, parts []int32) (int, error) {
	topic := ix.cfg.Topic
	stable, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("history: stable offsets of %s: %w", topic, err)
	}
	total := 0
	for _, p := range parts {
		lso, ok := stable.Lookup(topic, p)
		if !ok || lso.Err != nil {
			return total, fmt.Errorf("history: stable offset of %s[%d] unavailable", topic, p)
		}
		from, ok, err := ix.cfg.Index.Checkpoint(p)
		if err != nil {
			return total, err
		}
		if !ok || from < 0 {
			from = 0
		}
		if ok && from > lso.Offset {
			// The checkpoint is past the end of the log the index was
			// built from (same topic id): the log was truncated, or the
			// index comes from a newer copy of it. Records written at
			// offsets below the checkpoint would never be indexed, and
			// entries at or past the end may point at other records
			// now: start over.
			ix.log.Warn("history index is past the end of the events topic (truncated log?); rebuilding it", "partition", p, "checkpoint", from, "last_stable", lso.Offset)
			id, err := ix.cfg.Index.TopicID()
			if err != nil {
				return total, err
			}
			if err := ix.cfg.Index.Reset(id); err != nil {
				return total, err
			}
			return total, errReset
		}
		if from >= lso.Offset {
			if !ok {
				// An empty partition is indexed too: readers of its
				// aggregates must not wait for a first event.
				if _, err := ix.cfg.Index.Apply(p, nil, lso.Offset); err != nil {
					return total, err
				}
			}
			continue
		}
		n, err := ix.readRange(ctx, cl, adm, p, from, lso.Offset)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (ix *Indexer) readRange(ctx context.Context, cl *kgo.Client, adm *kadm.Client, p int32, from, until int64) (int, error) {
	topic := ix.cfg.Topic
	n := 0
	apply := func(e *entries, records int, next int64) error {
		st, err := ix.cfg.Index.apply(p, e, next)
		if err != nil {
			return err
		}
		ix.mu.Lock()
		ix.stats.Records += int64(records)
		ix.stats.Indexed += int64(st.Indexed)
		ix.stats.Skipped += int64(st.Skipped)
		ix.stats.Batches++
		close(ix.changed)
		ix.changed = make(chan struct{})
		ix.mu.Unlock()
		return nil
	}
	fctx, cancel := context.WithCancel(ctx)
	chunks := make(chan indexChunk, 1)
	free := make(chan *entries, 2)
	ix.mu.Lock()
	desc := ix.desc[p]
	ix.mu.Unlock()
	go fetchEntries(fctx, cl, topic, p, from, until, &desc, free, chunks)
	// The fetcher ends (and closes chunks) once cancelled: wait for it,
	// so that nothing uses cl after readRange returns.
	defer func() {
		cancel()
		for range chunks {
		}
		ix.mu.Lock()
		ix.desc[p] = desc
		ix.mu.Unlock()
	}()
	pos := from
	var err error
	for c := range chunks {
		if c.err != nil {
			err = c.err
			break
		}
		// The position may be past until when a fetch returned more (the
		// last stable offset moved meanwhile): those records were not
		// taken, so the checkpoint is until, never the position.
		if aerr := apply(c.e, c.records, min(c.next, until)); aerr != nil {
			return n, aerr
		}
		n += c.records
		pos = c.next
		select {
		case free <- c.e:
		default:
		}
	}
	if errors.Is(err, logread.ErrOffsetOutOfRange) {
		// Below the log start (records deleted): start where the log
		// starts now; what was deleted is in no history any more.
		starts, serr := adm.ListStartOffsets(ctx, topic)
		if serr != nil {
			return n, fmt.Errorf("history: %w (and start offsets: %v)", err, serr)
		}
		so, ok := starts.Lookup(topic, p)
		if !ok || so.Err != nil || so.Offset <= pos {
			return n, err
		}
		ix.log.Warn("history indexer: checkpoint below the log start; skipping to it", "partition", p, "checkpoint", pos, "log_start", so.Offset)
		return n, apply(new(entries), 0, so.Offset)
	}
	if err != nil {
		return n, err
	}
	if pos < until {
		if err = ctx.Err(); err == nil {
			err = errors.New("fetcher stopped")
		}
		return n, fmt.Errorf("history: %s[%d] at %d of %d: %w", topic, p, pos, until, err)
	}
	return n, nil
}

// Poke makes a running indexer start its next round at once instead of
// after Interval (a caller that knows records were just written and wants
// them indexed soon).
func (ix *Indexer) Poke() {
	select {
	case ix.poke <- struct{}{}:
	default:
	}
}

// Changed returns a channel closed at the next write to the index.
func (ix *Indexer) Changed() <-chan struct{} {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.changed
}
