// Package logread reads one partition of a topic, read_committed (or
// read_uncommitted, Options.Uncommitted), up to a given offset, deciding the
// end from the fetch position rather than from the records it is handed.
//
// Under read_committed a consumer is not handed the records of aborted
// transactions, and a transaction marker may sit at or above the last stable
// offset: a loop that waits to be handed the record at target-1 (or a
// marker past it) can wait forever. kgo's consumer does not expose its fetch
// position, so Read issues the fetches itself and lets
// kgo.ProcessFetchPartition compute the next offset, which moves past
// aborted batches and markers whether or not they are returned.
package logread

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrOffsetOutOfRange: from is below the partition's log start (or past its
// end); the caller decides where to restart.
var ErrOffsetOutOfRange = errors.New("logread: offset out of range")

// Options bound one read.
type Options struct {
	// MaxBytes bounds one fetch response. Default 4 MiB.
	MaxBytes int32
	// PartitionMaxBytes bounds the partition's bytes in one response.
	// Default MaxBytes.
	PartitionMaxBytes int32
	// KeepControl hands control records (transaction markers) to fn too.
	KeepControl bool
	// Uncommitted reads read_uncommitted: every record up to the high
	// watermark, whatever its transaction's outcome (with KeepControl,
	// the caller decides it from the markers).
	Uncommitted bool
}

// Partition describes a topic partition as the broker sees it now.
type Partition struct {
	TopicID [16]byte
	Leader  int32
}

// Describe returns the topic's id and the leader of partition part.
func Describe(ctx context.Context, cl *kgo.Client, topic string, part int32) (Partition, error) {
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return Partition{}, fmt.Errorf("logread: metadata of %s: %w", topic, err)
	}
	for _, rt := range resp.Topics {
		if rt.Topic == nil || *rt.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			return Partition{}, fmt.Errorf("logread: metadata of %s: %w", topic, err)
		}
		for _, rp := range rt.Partitions {
			if rp.Partition != part {
				continue
			}
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return Partition{}, fmt.Errorf("logread: metadata of %s[%d]: %w", topic, part, err)
			}
			return Partition{TopicID: rt.TopicID, Leader: rp.Leader}, nil
		}
	}
	return Partition{}, fmt.Errorf("logread: metadata of %s[%d]: %w", topic, part, kerr.UnknownTopicOrPartition)
}

// Read hands fn every committed record of topic[part] in [from, until), in
// offset order, and returns the fetch position it reached (>= until). A
// record at or past until is not handed over. Retriable broker errors are
// retried (with a short backoff) until ctx ends.
//
// The next fetch is on its way while fn works on the records of the last
// one (one response ahead, so at most two are held), so a caller that
// writes what it reads waits for neither the broker nor its own writes
// alone.
func Read(ctx context.Context, cl *kgo.Client, topic string, part int32, from, until int64, o Options, fn func(*kgo.Record) error) (int64, error) {
	o = o.withDefaults()
	if from >= until {
		return from, nil
	}
	fctx, cancel := context.WithCancel(ctx)
	chunks := make(chan chunk, 1)
	go fetchAhead(fctx, cl, topic, part, from, until, o, chunks)
	// The fetcher ends (and closes chunks) once cancelled: wait for it,
	// so that nothing uses cl after Read returns.
	defer func() {
		cancel()
		for range chunks {
		}
	}()
	pos := from
	for c := range chunks {
		if c.err != nil {
			return pos, c.err
		}
		for _, r := range c.records {
			if r.Offset < pos || r.Offset >= until {
				continue
			}
			if err := fn(r); err != nil {
				return pos, err
			}
		}
		pos = c.next
	}
	if pos < until {
		// The fetcher stopped without an error chunk: ctx ended.
		err := ctx.Err()
		if err == nil {
			err = errors.New("fetcher stopped")
		}
		return pos, fmt.Errorf("logread: %s[%d] at %d of %d: %w", topic, part, pos, until, err)
	}
	return pos, nil
}

// oneFetchMaxBytes is the response bound of a fetch of one partition: the
// partition's bound (Options) is the one that applies. The embedded broker
// (kfake) leaves a partition's aborted transactions out of a response
// that it ended on the response bound (its "full" exit skips the lookup),
// so a read_committed reader would be handed aborted records: never let
// the response bound be the one that ends a response.
const oneFetchMaxBytes = math.MaxInt32

// chunk is the records of one fetch and the position after them, or the
// error that ends the read.
type chunk struct {
	records []*kgo.Record
	next    int64
	err     error
}

// fetchAhead fetches [from, until) and sends each response's records to out,
// ending with an error chunk or once until is reached; it closes out.
func fetchAhead(ctx context.Context, cl *kgo.Client, topic string, part int32, from, until int64, o Options, out chan<- chunk) {
	defer close(out)
	send := func(c chunk) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	isolation := kgo.ReadCommitted()
	if o.Uncommitted {
		isolation = kgo.ReadUncommitted()
	}
	next, err := fetchLoop(ctx, cl, topic, part, from, until, o, func(got *kmsg.FetchResponseTopicPartition, next int64) (int64, bool, error) {
		fp, at := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			KeepControlRecords: o.KeepControl,
			Offset:             next,
			IsolationLevel:     isolation,
			Topic:              topic,
			Partition:          part,
		}, got, kgo.DefaultDecompressor(), nil)
		if fp.Err != nil {
			return next, false, fp.Err
		}
		if at <= next {
			return at, true, nil
		}
		return at, send(chunk{records: fp.Records, next: at}), nil
	})
	if err != nil {
		send(chunk{next: next, err: err})
	}
}

// fetchLoop issues the fetches of [from, until), handing each response's
// partition and the fetch position to decode, which hands its records on
// and returns the position after them (next if there was nothing stable
// past it), and false to stop the read.
func fetchLoop(ctx context.Context, cl *kgo.Client, topic string, part int32, from, until int64, o Options, decode func(*kmsg.FetchResponseTopicPartition, int64) (int64, bool, error)) (int64, error) {
	next := from
	var desc Partition
	known := false
	backoff := 10 * time.Millisecond
	retry := func(err error) error {
		known = false
		select {
		case <-ctx.Done():
			return fmt.Errorf("logread: %s[%d] at %d of %d: %w (last error: %v)", topic, part, next, until, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
		return nil
	}
	for next < until {
		if !known {
			var err error
			if desc, err = Describe(ctx, cl, topic, part); err != nil {
				if ctx.Err() == nil && (kerr.IsRetriable(err) || errors.Is(err, kerr.UnknownTopicOrPartition)) {
					if err := retry(err); err != nil {
						return next, err
					}
					continue
				}
				return next, err
			}
			known = true
		}
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 500
		req.MinBytes = 1
		req.MaxBytes = oneFetchMaxBytes
		req.IsolationLevel = 1
		if o.Uncommitted {
			req.IsolationLevel = 0
		}
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = topic, desc.TopicID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = part, next, min(o.PartitionMaxBytes, o.MaxBytes)
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		kresp, err := cl.Broker(int(desc.Leader)).Request(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				return next, fmt.Errorf("logread: %s[%d]: %w", topic, part, ctx.Err())
			}
			if err := retry(err); err != nil {
				return next, err
			}
			continue
		}
		resp := kresp.(*kmsg.FetchResponse)
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			if err := retry(err); err != nil {
				return next, err
			}
			continue
		}
		got := FetchPartition(resp, part)
		if got == nil {
			if err := retry(errors.New("partition missing from the fetch response")); err != nil {
				return next, err
			}
			continue
		}
		if err := kerr.ErrorForCode(got.ErrorCode); err != nil {
			if errors.Is(err, kerr.OffsetOutOfRange) {
				return next, fmt.Errorf("%w: %s[%d] at %d (log start %d, end %d)", ErrOffsetOutOfRange, topic, part, next, got.LogStartOffset, got.HighWatermark)
			}
			if kerr.IsRetriable(err) || errors.Is(err, kerr.UnknownTopicID) {
				if err := retry(err); err != nil {
					return next, err
				}
				continue
			}
			return next, fmt.Errorf("logread: fetch %s[%d] at %d: %w", topic, part, next, err)
		}
		at, more, err := decode(got, next)
		if err != nil {
			return next, fmt.Errorf("logread: decoding %s[%d] at %d: %w", topic, part, next, err)
		}
		if at <= next {
			// Nothing stable past next yet: only possible while until is
			// above the last stable offset (a caller waiting for a
			// transaction to end); ctx bounds the wait.
			if err := retry(fmt.Errorf("no progress at %d (last stable %d)", next, got.LastStableOffset)); err != nil {
				return next, err
			}
			known = true
			continue
		}
		backoff = 10 * time.Millisecond
		next = at
		if !more {
			return next, nil // the reader stopped
		}
	}
	return next, nil
}

// withDefaults is o with its fetch bounds set: 4 MiB a fetch, and a
// partition bound equal to it unless set.
func (o Options) withDefaults() Options {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 4 << 20
	}
	if o.PartitionMaxBytes <= 0 {
		o.PartitionMaxBytes = o.MaxBytes
	}
	return o
}
