package projection

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// batch returns a record batch of n bytes of records at offsets
// first..first+count-1 (attributes: 0x10 transactional, 0x20 control).
func batch(first int64, count int32, attributes int16, producerID int64, n int) []byte {
	rb := kmsg.RecordBatch{FirstOffset: first, Magic: 2, Attributes: attributes, LastOffsetDelta: count - 1,
		ProducerID: producerID, NumRecords: count, Records: make([]byte, n)}
	rb.Length = int32(len(rb.AppendTo(nil)) - 12)
	return rb.AppendTo(nil)
}

// TestScanPendingJudgesCutBatchesByHeader: a real broker may end a fetch
// response inside a batch (kfake never does). A cut batch is judged by its
// header: an aborted one is not data (it was counted as data, so a read
// model behind a large aborted batch never counted as caught up), a
// committed one is.
func TestScanPendingJudgesCutBatchesByHeader(t *testing.T) {
	const pid = 7
	abortedAt := func(first int64) []kmsg.FetchResponseTopicPartitionAbortedTransaction {
		return []kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: pid, FirstOffset: first}}
	}
	marker := batch(1, 1, 0x30, pid, 10)
	big := batch(2, 3, 0x10, pid, 4<<20)
	for _, tc := range []struct {
		name    string
		b       []byte
		aborted []kmsg.FetchResponseTopicPartitionAbortedTransaction
		lso     int64 // 100 if 0
		pending bool
		next    int64
		done    bool
		err     bool
	}{
		{name: "aborted, cut", b: cat(batch(0, 1, 0x10, pid, 10), marker, big[:1000]), aborted: append(abortedAt(0), abortedAt(2)...), next: 5},
		{name: "aborted, cut in its header", b: cat(batch(0, 1, 0x10, pid, 10), marker, big[:30]), aborted: abortedAt(0), next: 2},
		{name: "aborted, whole", b: cat(batch(0, 1, 0x10, pid, 10), marker, big), aborted: append(abortedAt(0), abortedAt(2)...), next: 5},
		{name: "committed, cut", b: cat(marker, big[:1000]), pending: true},
		{name: "plain data, cut", b: batch(1, 2, 0, -1, 4<<20)[:5000], pending: true},
		{name: "commit markers only", b: cat(batch(0, 1, 0x30, pid, 10), batch(1, 1, 0x30, pid, 10)), next: 2},
		{name: "commit markers only, up to lso", b: cat(batch(0, 1, 0x30, pid, 10), batch(1, 1, 0x30, pid, 10)), lso: 2, done: true},
		{name: "data at lso", b: cat(batch(0, 1, 0x30, pid, 10), batch(1, 1, 0, -1, 10)), lso: 1, done: true},
		{name: "first batch header cut", b: big[:30], err: true},
		{name: "garbage", b: make([]byte, 100), err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lso := tc.lso
			if lso == 0 {
				lso = 100
			}
			pending, next, done, err := scanPending(tc.b, tc.aborted, 0, lso)
			if (err != nil) != tc.err || pending != tc.pending || next != tc.next || done != tc.done {
				t.Fatalf("pending %v next %d done %v err %v; want %v %d %v err=%v", pending, next, done, err, tc.pending, tc.next, tc.done, tc.err)
			}
		})
	}
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}
