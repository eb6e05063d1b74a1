package projection

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// PartitionProgress is where a group stands on one partition of its input.
type PartitionProgress struct {
	Partition int32
	// Start and End are the partition's log start and end offsets.
	Start, End int64
	// Committed is the group's committed offset, -1 if it has none.
	Committed int64
}

// Position is the offset the group reads next (its commit, or the start).
func (p PartitionProgress) Position() int64 { return max(p.Committed, p.Start) }

// Lag is End minus Position. On a transactional topic (the events topic) a
// group that read everything still lags by the trailing commit markers (one
// per partition, usually): goka (sarama) commits the offset after its last
// record, never past a marker. CaughtUp tells whether anything is left.
func (p PartitionProgress) Lag() int64 { return max(0, p.End-p.Position()) }

// GroupProgress reads a group's committed offsets on topic and the topic's
// start and end offsets, by partition.
func GroupProgress(ctx context.Context, adm *kadm.Client, group, topic string) ([]PartitionProgress, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("projection: start offsets of %s: %w", topic, err)
	}
	if err := starts.Error(); err != nil {
		return nil, fmt.Errorf("projection: start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("projection: end offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("projection: end offsets of %s: %w", topic, err)
	}
	commits, err := adm.FetchOffsets(ctx, group)
	// A group that never committed is "not found" on some brokers (kfake)
	// and empty on others (Kafka): either way it has no commits yet.
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return nil, fmt.Errorf("projection: offsets of group %s: %w", group, err)
	}
	var out []PartitionProgress
	for p, s := range starts[topic] {
		pp := PartitionProgress{Partition: p, Start: s.Offset, End: ends[topic][p].Offset, Committed: -1}
		if c, ok := commits.Lookup(topic, p); ok && c.Err == nil && c.At >= 0 {
			pp.Committed = c.At
		}
		out = append(out, pp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out, nil
}

// Progress is how far one version of the read models has come.
type Progress struct {
	// Done and Total sum the positions (minus starts) and ends (minus starts)
	// of all three groups over all partitions of their inputs.
	Done, Total int64
	// Groups has each group's progress on its input topic.
	Groups map[string][]PartitionProgress
}

// VersionProgress reads the progress of every group of a version.
func VersionProgress(ctx context.Context, adm *kadm.Client, n Names, eventsTopic string) (Progress, error) {
	pr := Progress{Groups: map[string][]PartitionProgress{}}
	inputs := map[string]string{
		string(n.AccountsGroup()): eventsTopic,
		string(n.OwnersGroup()):   string(n.ByOwnerTopic()),
		string(n.TotalsGroup()):   string(n.ByCurrencyTopic()),
	}
	for g, topic := range inputs {
		ps, err := GroupProgress(ctx, adm, g, topic)
		if err != nil {
			return pr, err
		}
		pr.Groups[g] = ps
		for _, p := range ps {
			pr.Done += p.Position() - p.Start
			pr.Total += p.End - p.Start
		}
	}
	return pr, nil
}

// CaughtUp reports whether a version has read everything: its accounts
// group has no committed event left to read (see PendingData: the commit
// markers after its position do not count), its downstream groups (owners,
// totals) have read all of their inputs, which are not transactional. The
// query server also waits for its views (ReadModels.TablesCaughtUp).
func CaughtUp(ctx context.Context, cl *kgo.Client, adm *kadm.Client, n Names, eventsTopic string) (bool, Progress, error) {
	pr, err := VersionProgress(ctx, adm, n, eventsTopic)
	if err != nil {
		return false, pr, err
	}
	from := map[int32]int64{}
	for _, p := range pr.Groups[string(n.AccountsGroup())] {
		if p.Lag() > 0 {
			from[p.Partition] = p.Position()
		}
	}
	pending, err := PendingData(ctx, cl, adm, eventsTopic, from)
	if err != nil || pending {
		return false, pr, err
	}
	for _, g := range []string{string(n.OwnersGroup()), string(n.TotalsGroup())} {
		for _, p := range pr.Groups[g] {
			if p.Lag() > 0 {
				return false, pr, nil
			}
		}
	}
	return true, pr, nil
}

// PendingData reports whether a read_committed consumer positioned at
// from[p] would still read a record of topic: a committed data record at or
// after from[p], below the last stable offset. It reads the record batch
// headers with plain Fetch requests, so commit markers and aborted batches,
// which no consumer ever sees, do not count. Partitions not in from are not
// checked.
func PendingData(ctx context.Context, cl *kgo.Client, adm *kadm.Client, topic string, from map[int32]int64) (bool, error) {
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return false, fmt.Errorf("projection: metadata of %s: %w", topic, err)
	}
	t, ok := td[topic]
	if !ok || t.Err != nil {
		return false, fmt.Errorf("projection: metadata of %s: %v", topic, t.Err)
	}
	for p, off := range from {
		pd, ok := t.Partitions[p]
		if !ok {
			return false, fmt.Errorf("projection: %s has no partition %d", topic, p)
		}
		for range 100 { // bounded: 100 fetches of up to 1 MiB of batches each
			pending, next, done, err := fetchPending(ctx, cl, t.ID, topic, pd.Leader, p, off)
			if err != nil {
				return false, err
			}
			if pending {
				return true, nil
			}
			if done {
				break
			}
			off = next
		}
	}
	return false, nil
}

// fetchPending fetches partition p from off and looks for a committed data
// batch. done: nothing more below the last stable offset; else next is the
// offset to continue at.
func fetchPending(ctx context.Context, cl *kgo.Client, id kadm.TopicID, topic string, leader, p int32, off int64) (pending bool, next int64, done bool, err error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	// Only the partition's bound may end the response: the embedded
	// broker (kfake) leaves the aborted transactions out of a response it
	// ended on the response bound (internal/logread, oneFetchMaxBytes), and
	// aborted batches would count as data.
	req.MaxBytes = math.MaxInt32
	req.IsolationLevel = 1
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic, id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch, rp.LogStartOffset = p, off, 1<<20, -1, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl.Broker(int(leader)))
	if err != nil {
		return false, 0, false, fmt.Errorf("projection: fetch %s/%d: %w", topic, p, err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return false, 0, false, fmt.Errorf("projection: fetch %s/%d: unexpected response shape", topic, p)
	}
	rp2 := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(rp2.ErrorCode); err != nil {
		if errors.Is(err, kerr.OffsetOutOfRange) {
			return false, 0, true, nil
		}
		return false, 0, false, fmt.Errorf("projection: fetch %s/%d: %w", topic, p, err)
	}
	lso := rp2.LastStableOffset
	if lso < 0 {
		lso = rp2.HighWatermark
	}
	if off >= lso {
		return false, 0, true, nil
	}
	pending, next, done, err = scanPending(rp2.RecordBatches, rp2.AbortedTransactions, off, lso)
	if err != nil {
		return false, 0, false, fmt.Errorf("projection: fetch %s/%d: %w", topic, p, err)
	}
	return pending, next, done, nil
}

// batchHeaderBytes is a record batch's header up to its record count: all
// that scanPending reads of a batch.
const batchHeaderBytes = 61

// scanPending walks a fetch response's record batches from off, below the
// last stable offset lso, as a read_committed consumer would, and reports
// whether one holds committed data (pending), else where to continue
// (next) or that nothing more is below lso (done). Only the batch headers
// are read: a real broker may end a response inside a batch (kfake never
// does), and a cut batch is judged by its header like any other (an
// aborted one larger than the fetch is not data).
func scanPending(b []byte, aborted []kmsg.FetchResponseTopicPartitionAbortedTransaction, off, lso int64) (pending bool, next int64, done bool, err error) {
	// As a read_committed consumer does: a producer's batches are aborted
	// from the first offset of an aborted transaction up to its next marker.
	abortedTxns := append([]kmsg.FetchResponseTopicPartitionAbortedTransaction(nil), aborted...)
	sort.Slice(abortedTxns, func(i, j int) bool { return abortedTxns[i].FirstOffset < abortedTxns[j].FirstOffset })
	aborting := map[int64]bool{}
	next = off
	for len(b) >= batchHeaderBytes {
		first := int64(binary.BigEndian.Uint64(b[0:8]))
		length := int64(binary.BigEndian.Uint32(b[8:12]))
		attributes := int16(binary.BigEndian.Uint16(b[21:23]))
		last := first + int64(int32(binary.BigEndian.Uint32(b[23:27])))
		producerID := int64(binary.BigEndian.Uint64(b[43:51]))
		if length < batchHeaderBytes-12 || last < first || b[16] != 2 {
			return false, 0, false, fmt.Errorf("not a record batch at offset %d", first)
		}
		b = b[min(int64(len(b)), 12+length):]
		next = last + 1
		for len(abortedTxns) > 0 && abortedTxns[0].FirstOffset <= last {
			aborting[abortedTxns[0].ProducerID] = true
			abortedTxns = abortedTxns[1:]
		}
		control := attributes&0x20 != 0
		transactional := attributes&0x10 != 0
		if control {
			delete(aborting, producerID)
			continue
		}
		if last < off || first >= lso || (transactional && aborting[producerID]) {
			continue
		}
		return true, 0, false, nil
	}
	if next == off && len(b) > 0 {
		// A broker returns at least the first batch whole (KIP-74).
		return false, 0, false, fmt.Errorf("a record batch header cut at offset %d", off)
	}
	if next >= lso || next == off {
		return false, 0, true, nil
	}
	return false, next, false, nil
}
