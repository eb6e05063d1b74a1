package logread

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fetched is the answer to one FetchAt.
type Fetched struct {
	// Records are the committed records at or past the fetch offset in the
	// batches the broker returned.
	Records []*kgo.Record
	// Next is the fetch position after them (past aborted batches and
	// markers too).
	Next int64
	// LastStable is the partition's last stable offset when the broker
	// answered.
	LastStable int64
}

// FetchAt issues one read_committed fetch of topic[part] at offset from, of
// at most maxBytes for the partition (the broker returns at least one whole
// batch), from the leader desc names. It does not retry: callers that read
// many scattered offsets at once (package history) retry with a fresh
// Describe. maxBytes <= 0 asks for one batch.
func FetchAt(ctx context.Context, cl *kgo.Client, topic string, part int32, desc Partition, from int64, maxBytes int32) (Fetched, error) {
	if maxBytes <= 0 {
		maxBytes = 1
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 0
	req.MaxBytes = oneFetchMaxBytes // not maxBytes: see oneFetchMaxBytes
	req.IsolationLevel = 1
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic, desc.TopicID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = part, from, maxBytes
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	kresp, err := cl.Broker(int(desc.Leader)).Request(ctx, req)
	if err != nil {
		return Fetched{Next: from}, fmt.Errorf("logread: fetch %s[%d] at %d: %w", topic, part, from, err)
	}
	resp := kresp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return Fetched{Next: from}, fmt.Errorf("logread: fetch %s[%d] at %d: %w", topic, part, from, err)
	}
	got := FetchPartition(resp, part)
	if got == nil {
		return Fetched{Next: from}, fmt.Errorf("logread: fetch %s[%d] at %d: partition missing from the response", topic, part, from)
	}
	if err := kerr.ErrorForCode(got.ErrorCode); err != nil {
		if errors.Is(err, kerr.OffsetOutOfRange) {
			err = fmt.Errorf("%w: %s[%d] at %d (log start %d, end %d)", ErrOffsetOutOfRange, topic, part, from, got.LogStartOffset, got.HighWatermark)
		}
		return Fetched{Next: from, LastStable: got.LastStableOffset}, fmt.Errorf("logread: fetch %s[%d] at %d: %w", topic, part, from, err)
	}
	fp, at := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset:         from,
		IsolationLevel: kgo.ReadCommitted(),
		Topic:          topic,
		Partition:      part,
	}, got, kgo.DefaultDecompressor(), nil)
	if fp.Err != nil {
		return Fetched{Next: from}, fmt.Errorf("logread: decoding %s[%d] at %d: %w", topic, part, from, fp.Err)
	}
	return Fetched{Records: fp.Records, Next: max(at, from), LastStable: got.LastStableOffset}, nil
}

// FetchPartition is partition part of a one-topic fetch response (nil when
// the response does not hold it).
func FetchPartition(resp *kmsg.FetchResponse, part int32) *kmsg.FetchResponseTopicPartition {
	var got *kmsg.FetchResponseTopicPartition
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			if resp.Topics[i].Partitions[j].Partition == part {
				got = &resp.Topics[i].Partitions[j]
			}
		}
	}
	return got
}
