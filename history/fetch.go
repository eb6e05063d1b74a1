package history

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/internal/logread"
)

// The indexer's own read of a partition: raw read_committed fetches parsed
// by logread.EachCommitted straight into index entries (no kgo.Record per record),
// one response ahead of the Pebble writes. internal/logread.Read is the
// same loop for callers that want kgo.Records; the end is decided the same
// way, from the fetch position, never from the last record handed over.

// indexChunk is the entries of one fetch response.
type indexChunk struct {
	e       *entries
	records int   // committed records in [from, until)
	next    int64 // the fetch position after the response
	err     error
}

const indexFetchBytes = 4 << 20

// cachedDesc is a partition's description kept between rounds of the
// indexer: a metadata request per partition and round costs the broker
// about as much as a small fetch. A fetch that fails drops it.
type cachedDesc struct {
	d  logread.Partition
	ok bool
}

// fetchEntries fetches topic[part] over [from, until) and sends each
// response's entries to out, ending with an error chunk or once until is
// reached; it closes out. Retriable errors are retried until ctx ends.
// free returns used entries for reuse. desc is the partition's description
// from an earlier read (used until a fetch fails) and is updated.
func fetchEntries(ctx context.Context, cl *kgo.Client, topic string, part int32, from, until int64, desc *cachedDesc, free <-chan *entries, out chan<- indexChunk) {
	defer close(out)
	send := func(c indexChunk) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	next := from
	known := desc.ok
	backoff := 10 * time.Millisecond
	fail := func(err error) { send(indexChunk{next: next, err: err}) }
	retry := func(err error) bool {
		known, desc.ok = false, false
		select {
		case <-ctx.Done():
			fail(fmt.Errorf("history: %s[%d] at %d of %d: %w (last error: %v)", topic, part, next, until, ctx.Err(), err))
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
		return true
	}
	dec := kgo.DefaultDecompressor()
	for next < until {
		if !known {
			var err error
			if desc.d, err = logread.Describe(ctx, cl, topic, part); err != nil {
				if ctx.Err() == nil && (kerr.IsRetriable(err) || errors.Is(err, kerr.UnknownTopicOrPartition)) {
					if !retry(err) {
						return
					}
					continue
				}
				fail(err)
				return
			}
			known, desc.ok = true, true
		}
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 500
		req.MinBytes = 1
		req.MaxBytes = indexFetchBytes
		req.IsolationLevel = 1
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = topic, desc.d.TopicID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = part, next, indexFetchBytes
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		kresp, err := cl.Broker(int(desc.d.Leader)).Request(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				fail(fmt.Errorf("history: %s[%d]: %w", topic, part, ctx.Err()))
				return
			}
			if !retry(err) {
				return
			}
			continue
		}
		resp := kresp.(*kmsg.FetchResponse)
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			if !retry(err) {
				return
			}
			continue
		}
		got := logread.FetchPartition(resp, part)
		if got == nil {
			if !retry(errors.New("partition missing from the fetch response")) {
				return
			}
			continue
		}
		if err := kerr.ErrorForCode(got.ErrorCode); err != nil {
			if errors.Is(err, kerr.OffsetOutOfRange) {
				fail(fmt.Errorf("%w: %s[%d] at %d (log start %d, end %d)", logread.ErrOffsetOutOfRange, topic, part, next, got.LogStartOffset, got.HighWatermark))
				return
			}
			if kerr.IsRetriable(err) || errors.Is(err, kerr.UnknownTopicID) {
				if !retry(err) {
					return
				}
				continue
			}
			fail(fmt.Errorf("history: fetch %s[%d] at %d: %w", topic, part, next, err))
			return
		}
		var e *entries
		select {
		case e = <-free:
			e.reset()
		default:
			e = new(entries)
		}
		records := 0
		at, err := logread.EachCommitted(got, next, dec, func(r logread.Rec) {
			if r.Offset >= until {
				return
			}
			records++
			if aggType, version, ok := eventOf(&r); ok {
				e.add(aggType, r.Key, version, part, r.Offset, millis(r.TimestampMillis))
			} else {
				e.skipped++
			}
		})
		if err != nil {
			fail(fmt.Errorf("history: decoding %s[%d] at %d: %w", topic, part, next, err))
			return
		}
		if at <= next {
			// Nothing stable past next yet (until above the last stable
			// offset); ctx bounds the wait.
			if !retry(fmt.Errorf("no progress at %d (last stable %d)", next, got.LastStableOffset)) {
				return
			}
			known = true
			continue
		}
		backoff = 10 * time.Millisecond
		next = at
		if !send(indexChunk{e: e, records: records, next: at}) {
			return
		}
	}
}

// fetchWanted issues one read_committed fetch of topic[part] at offset from
// (the broker returns at least the whole batch holding it) and returns,
// as kgo.Records, only the committed records at the offsets want reports
// true for, with the fetch position after the response (or after the last
// of them, when wantAfter(o, last) says no offset in (o, last] is wanted).
// Only those records are decoded beyond their offset: the scattered reads
// of Reader.History want one record of each batch they fetch. Errors as
// logread.FetchAt's.
func fetchWanted(ctx context.Context, cl *kgo.Client, topic string, part int32, desc logread.Partition, from int64, want func(int64) bool, wantAfter func(o, last int64) bool) ([]*kgo.Record, int64, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 0
	req.MaxBytes = 1
	req.IsolationLevel = 1
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic, desc.TopicID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = part, from, 1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	kresp, err := cl.Broker(int(desc.Leader)).Request(ctx, req)
	if err != nil {
		return nil, from, fmt.Errorf("history: fetch %s[%d] at %d: %w", topic, part, from, err)
	}
	resp := kresp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, from, fmt.Errorf("history: fetch %s[%d] at %d: %w", topic, part, from, err)
	}
	got := logread.FetchPartition(resp, part)
	if got == nil {
		return nil, from, fmt.Errorf("history: fetch %s[%d] at %d: partition missing from the response", topic, part, from)
	}
	if err := kerr.ErrorForCode(got.ErrorCode); err != nil {
		if errors.Is(err, kerr.OffsetOutOfRange) {
			err = fmt.Errorf("%w: %s[%d] at %d (log start %d, end %d)", logread.ErrOffsetOutOfRange, topic, part, from, got.LogStartOffset, got.HighWatermark)
		}
		return nil, from, fmt.Errorf("history: fetch %s[%d] at %d: %w", topic, part, from, err)
	}
	dec := kgo.DefaultDecompressor()
	var out []*kgo.Record
	// The rest of a batch after the last record wanted from it is not
	// read (a scattered read wants one record of each batch, anywhere in
	// it): the position returned is then past that record, and the
	// caller fetches its next wanted offset.
	next, err := logread.EachCommittedWhile(got, from, dec, func(r logread.Rec) bool {
		if want(r.Offset) {
			// Key, value and position only: the reader checks the key
			// and the envelope of an indexed record, never its headers.
			out = append(out, &kgo.Record{Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value), Topic: topic, Partition: part, Offset: r.Offset, Timestamp: time.UnixMilli(r.TimestampMillis)})
		}
		return wantAfter(r.Offset, r.BatchLast)
	})
	if err != nil {
		return nil, from, fmt.Errorf("history: decoding %s[%d] at %d: %w", topic, part, from, err)
	}
	return out, max(next, from), nil
}
