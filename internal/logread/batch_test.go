package logread

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testRec is one record of a test batch.
type testRec struct {
	delta      int32
	key, value []byte // value nil: a tombstone
	headers    int
}

// testBatch is one v2 record batch to encode.
type testBatch struct {
	first     int64
	lastDelta int32 // may exceed the last record's delta (compaction)
	pid       int64
	codec     kgo.CompressionCodecType
	txn, ctl  bool
	recs      []testRec
}

func appendVarBytes(b, v []byte) []byte {
	if v == nil {
		return binary.AppendVarint(b, -1)
	}
	return append(binary.AppendVarint(b, int64(len(v))), v...)
}

func (tb testBatch) encode(t testing.TB) []byte {
	var raw []byte
	for _, r := range tb.recs {
		var body []byte
		body = append(body, 0)              // attributes
		body = binary.AppendVarint(body, 7) // timestamp delta
		body = binary.AppendVarint(body, int64(r.delta))
		body = appendVarBytes(body, r.key)
		body = appendVarBytes(body, r.value)
		body = binary.AppendVarint(body, int64(r.headers))
		for h := range r.headers {
			body = appendVarBytes(body, fmt.Appendf(nil, "h%d", h))
			body = appendVarBytes(body, []byte("v"))
		}
		raw = binary.AppendVarint(raw, int64(len(body)))
		raw = append(raw, body...)
	}
	attrs := int16(tb.codec)
	if tb.codec != 0 {
		c, err := kgo.DefaultCompressor(codecOf(tb.codec))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		out, used := c.Compress(&buf, raw)
		if used != tb.codec {
			t.Fatalf("compressor used codec %d, not %d", used, tb.codec)
		}
		raw = bytes.Clone(out)
	}
	if tb.txn {
		attrs |= 0b1_0000
	}
	if tb.ctl {
		attrs |= 0b10_0000
	}
	b := binary.BigEndian.AppendUint64(nil, uint64(tb.first))
	b = binary.BigEndian.AppendUint32(b, uint32(49+len(raw)))
	b = binary.BigEndian.AppendUint32(b, 3) // leader epoch
	b = append(b, 2)
	b = binary.BigEndian.AppendUint32(b, 0) // crc, below
	b = binary.BigEndian.AppendUint16(b, uint16(attrs))
	b = binary.BigEndian.AppendUint32(b, uint32(tb.lastDelta))
	b = binary.BigEndian.AppendUint64(b, 1000)
	b = binary.BigEndian.AppendUint64(b, 1000)
	b = binary.BigEndian.AppendUint64(b, uint64(tb.pid))
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(tb.recs)))
	b = append(b, raw...)
	fixCRC(b)
	return b
}

func fixCRC(b []byte) {
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
}

func codecOf(c kgo.CompressionCodecType) kgo.CompressionCodec {
	switch c {
	case kgo.CodecGzip:
		return kgo.GzipCompression()
	case kgo.CodecSnappy:
		return kgo.SnappyCompression()
	case kgo.CodecLz4:
		return kgo.Lz4Compression()
	case kgo.CodecZstd:
		return kgo.ZstdCompression()
	}
	return kgo.NoCompression()
}

func marker(commit bool) []byte {
	if commit {
		return []byte{0, 0, 0, 1}
	}
	return []byte{0, 0, 0, 0}
}

// genLog returns a partition's fetch response of random batches: plain
// data, transactions of several producers (committed, aborted, still open),
// their markers, compacted holes, every codec, tombstones and empty values.
// bounds are the byte offsets where each batch ends.
func genLog(t testing.TB, rng *rand.Rand) (rp *kmsg.FetchResponseTopicPartition, bounds []int, next int64) {
	rp = &kmsg.FetchResponseTopicPartition{Partition: 0, HighWatermark: -1, LastStableOffset: -1}
	off := int64(rng.IntN(50))
	codecs := []kgo.CompressionCodecType{kgo.CodecNone, kgo.CodecNone, kgo.CodecGzip, kgo.CodecSnappy, kgo.CodecLz4, kgo.CodecZstd}
	open := map[int64]bool{}
	var buf []byte
	for range 1 + rng.IntN(12) {
		pid := int64(1 + rng.IntN(3))
		tb := testBatch{first: off, pid: pid, codec: codecs[rng.IntN(len(codecs))]}
		if open[pid] && rng.IntN(3) == 0 {
			// The producer's marker.
			commit := rng.IntN(2) == 0
			tb.txn, tb.ctl = true, true
			tb.recs = []testRec{{key: marker(commit), value: []byte{0, 0, 0, 0, 0, 0}}}
			delete(open, pid)
		} else {
			tb.txn = open[pid] || rng.IntN(2) == 0
			if tb.txn && !open[pid] {
				open[pid] = true
				rp.AbortedTransactions = append(rp.AbortedTransactions, kmsg.FetchResponseTopicPartitionAbortedTransaction{ProducerID: pid, FirstOffset: off})
			}
			delta := int32(0)
			for i := range 1 + rng.IntN(6) {
				r := testRec{delta: delta, key: fmt.Appendf(nil, "k%d", rng.IntN(8)), headers: rng.IntN(3)}
				switch rng.IntN(5) {
				case 0: // tombstone
				case 1:
					r.value = []byte{}
				default:
					r.value = fmt.Appendf(nil, "v%d-%d", off, i)
				}
				tb.recs = append(tb.recs, r)
				delta += 1 + int32(rng.IntN(2)) // compaction holes
			}
		}
		tb.lastDelta = tb.recs[len(tb.recs)-1].delta + int32(rng.IntN(2))
		buf = append(buf, tb.encode(t)...)
		bounds = append(bounds, len(buf))
		off += int64(tb.lastDelta) + 1
	}
	// Only transactions that ended with an abort are listed as aborted:
	// drop the entries of commits and of those still open, whose outcome
	// the broker does not know yet (read_committed stops before them
	// anyway, but the parser must not care).
	rp.RecordBatches = buf
	keep := rp.AbortedTransactions[:0]
	for _, a := range rp.AbortedTransactions {
		if rng.IntN(2) == 0 {
			keep = append(keep, a)
		}
	}
	rp.AbortedTransactions = keep
	// A broker need not list them in order.
	rng.Shuffle(len(rp.AbortedTransactions), func(i, j int) {
		rp.AbortedTransactions[i], rp.AbortedTransactions[j] = rp.AbortedTransactions[j], rp.AbortedTransactions[i]
	})
	return rp, bounds, off
}

// oracle is franz-go's decision for the same response.
func oracle(rp *kmsg.FetchResponseTopicPartition, from int64) ([]KV, int64, error) {
	fp, at := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset: from, IsolationLevel: kgo.ReadCommitted(),
	}, rp, kgo.DefaultDecompressor(), nil)
	var out []KV
	for _, r := range fp.Records {
		out = append(out, KV{Offset: r.Offset, Key: r.Key, Value: r.Value})
	}
	return out, at, fp.Err
}

// sameAsOracle checks ParseCommitted against kgo.ProcessFetchPartition.
func sameAsOracle(t *testing.T, rp *kmsg.FetchResponseTopicPartition, from int64) {
	t.Helper()
	// Each parse gets its own copy: nothing may depend on the other's
	// side effects, and the input must not be written to.
	in := bytes.Clone(rp.RecordBatches)
	want, wantAt, wantErr := oracle(cloneResp(rp), from)
	got, gotAt, gotErr := ParseCommitted(cloneResp(rp), from, kgo.DefaultDecompressor(), nil)
	if !bytes.Equal(in, rp.RecordBatches) {
		t.Fatal("the response's bytes were modified")
	}
	sameRecsAsOracle(t, rp, from)
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("from %d: error %v, franz-go %v", from, gotErr, wantErr)
	}
	if wantErr != nil {
		return // logread drops the records of a response that failed
	}
	if gotAt != wantAt {
		t.Fatalf("from %d: next %d, franz-go %d", from, gotAt, wantAt)
	}
	if len(got) != len(want) {
		t.Fatalf("from %d: %d records, franz-go %d:\n%v\n%v", from, len(got), len(want), got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Offset != w.Offset || !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) || (g.Value == nil) != (w.Value == nil) || (g.Key == nil) != (w.Key == nil) {
			t.Fatalf("from %d: record %d is %d %q=%q (nil %v), franz-go %d %q=%q (nil %v)", from, i, g.Offset, g.Key, g.Value, g.Value == nil, w.Offset, w.Key, w.Value, w.Value == nil)
		}
	}
}

// sameRecsAsOracle checks what EachCommitted hands its callback beyond
// ParseCommitted's KV (timestamp, every header in order) against the
// kgo.Records of franz-go, for responses franz-go decodes without error.
func sameRecsAsOracle(t testing.TB, rp *kmsg.FetchResponseTopicPartition, from int64) {
	t.Helper()
	fp, wantAt := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset: from, IsolationLevel: kgo.ReadCommitted(),
	}, cloneResp(rp), kgo.DefaultDecompressor(), nil)
	var got []string
	gotAt, err := EachCommitted(cloneResp(rp), from, kgo.DefaultDecompressor(), func(r Rec) {
		s := fmt.Sprintf("%d ts=%d %q=%q", r.Offset, time.Unix(0, r.TimestampMillis*1e6).UnixMilli(), r.Key, r.Value)
		h := r.Headers()
		for {
			k, v, ok := h.Next()
			if !ok {
				break
			}
			s += fmt.Sprintf(" %q:%q", k, v)
		}
		got = append(got, s)
	})
	if (err == nil) != (fp.Err == nil) {
		t.Fatalf("from %d: error %v, franz-go %v", from, err, fp.Err)
	}
	if err != nil {
		return
	}
	var want []string
	for _, r := range fp.Records {
		s := fmt.Sprintf("%d ts=%d %q=%q", r.Offset, r.Timestamp.UnixMilli(), r.Key, r.Value)
		for _, h := range r.Headers {
			s += fmt.Sprintf(" %q:%q", h.Key, h.Value)
		}
		want = append(want, s)
	}
	if gotAt != wantAt || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("from %d: next %d, franz-go %d:\n%v\n%v", from, gotAt, wantAt, got, want)
	}
}

func cloneResp(rp *kmsg.FetchResponseTopicPartition) *kmsg.FetchResponseTopicPartition {
	c := *rp
	c.RecordBatches = bytes.Clone(rp.RecordBatches)
	c.AbortedTransactions = append([]kmsg.FetchResponseTopicPartitionAbortedTransaction(nil), rp.AbortedTransactions...)
	return &c
}

func TestParseCommittedMatchesFranzGo(t *testing.T) {
	for seed := range uint64(400) {
		rng := rand.New(rand.NewPCG(seed, 1))
		rp, bounds, end := genLog(t, rng)
		for _, from := range []int64{0, int64(rng.IntN(int(end) + 2)), end} {
			sameAsOracle(t, rp, from)
		}
		// The broker may cut the last batch short.
		cut := *rp
		cut.RecordBatches = rp.RecordBatches[:rng.IntN(len(rp.RecordBatches)+1)]
		sameAsOracle(t, &cut, 0)
		// And it may end exactly at a batch.
		cut.RecordBatches = rp.RecordBatches[:bounds[rng.IntN(len(bounds))]]
		sameAsOracle(t, &cut, 0)
	}
}

// TestParseCommittedAbortedAndControl pins the read_committed rules on a
// hand-made log: an aborted transaction's records and every marker are
// dropped, a committed one's kept, and the position moves past all of them.
func TestParseCommittedAbortedAndControl(t *testing.T) {
	var log []byte
	add := func(tb testBatch) { log = append(log, tb.encode(t)...) }
	add(testBatch{first: 0, lastDelta: 1, recs: []testRec{{0, []byte("a"), []byte("1"), 0}, {1, []byte("b"), nil, 1}}})
	add(testBatch{first: 2, pid: 7, txn: true, codec: kgo.CodecSnappy, recs: []testRec{{0, []byte("aborted"), []byte("x"), 0}}})
	add(testBatch{first: 3, pid: 8, txn: true, codec: kgo.CodecZstd, recs: []testRec{{0, []byte("committed"), []byte{}, 0}}})
	add(testBatch{first: 4, pid: 7, txn: true, ctl: true, recs: []testRec{{0, marker(false), []byte{0, 0, 0, 0, 0, 0}, 0}}})
	add(testBatch{first: 5, pid: 8, txn: true, ctl: true, recs: []testRec{{0, marker(true), []byte{0, 0, 0, 0, 0, 0}, 0}}})
	add(testBatch{first: 6, pid: 7, txn: true, codec: kgo.CodecLz4, lastDelta: 3, recs: []testRec{{0, []byte("later"), []byte("y"), 0}}})
	rp := &kmsg.FetchResponseTopicPartition{RecordBatches: log, AbortedTransactions: []kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: 7, FirstOffset: 2}}}
	got, at, err := ParseCommitted(rp, 1, kgo.DefaultDecompressor(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, r := range got {
		s = append(s, fmt.Sprintf("%d %s=%q nil=%v", r.Offset, r.Key, r.Value, r.Value == nil))
	}
	want := []string{`1 b="" nil=true`, `3 committed="" nil=false`, `6 later="y" nil=false`}
	if fmt.Sprint(s) != fmt.Sprint(want) || at != 10 {
		t.Fatalf("got %v at %d, want %v at 10", s, at, want)
	}
	sameAsOracle(t, rp, 1)
	sameAsOracle(t, rp, 0)
}

// TestParseCommittedHostile: broken input gets an error or is cut where
// franz-go cuts it, never a panic.
func TestParseCommittedHostile(t *testing.T) {
	good := testBatch{first: 10, recs: []testRec{{0, []byte("k"), []byte("v"), 0}}}.encode(t)
	cases := map[string][]byte{
		"bad crc":         append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1),
		"short header":    func() []byte { b := bytes.Clone(good[:40]); binary.BigEndian.PutUint32(b[8:], 28); return b }(),
		"negative length": func() []byte { b := bytes.Clone(good); binary.BigEndian.PutUint32(b[8:], 0xffffff00); return b }(),
		"old magic":       func() []byte { b := bytes.Clone(good); b[16] = 1; return b }(),
		"unknown magic":   func() []byte { b := bytes.Clone(good); b[16] = 9; return b }(),
		"negative count": func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint32(b[57:], 0xffffffff)
			fixCRC(b)
			return b
		}(),
		"huge count":       func() []byte { b := bytes.Clone(good); binary.BigEndian.PutUint32(b[57:], 1<<30); fixCRC(b); return b }(),
		"bad codec":        func() []byte { b := bytes.Clone(good); b[22] |= 6; fixCRC(b); return b }(),
		"not snappy":       func() []byte { b := bytes.Clone(good); b[22] |= 2; fixCRC(b); return b }(),
		"record too long":  func() []byte { b := bytes.Clone(good); b[61] = 0x7e; fixCRC(b); return b }(),
		"empty":            nil,
		"junk":             []byte("0123456789abcdefghijklmnopqrstuvwxyz"),
		"good then broken": append(bytes.Clone(good), good[:30]...),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			sameAsOracle(t, &kmsg.FetchResponseTopicPartition{RecordBatches: b}, 0)
		})
	}
}

// FuzzParseCommitted compares ParseCommitted with franz-go on generated
// logs with bytes flipped, with and without their checksums made right
// again (so that the flips reach the record decoding), and on raw bytes.
func FuzzParseCommitted(f *testing.F) {
	f.Add(uint64(1), []byte{}, false, uint16(0))
	f.Add(uint64(2), []byte{70, 1, 90, 3}, true, uint16(5))
	f.Add(uint64(3), []byte{62, 0x80}, true, uint16(0))
	f.Fuzz(func(t *testing.T, seed uint64, flips []byte, fix bool, from uint16) {
		rng := rand.New(rand.NewPCG(seed, 2))
		rp, bounds, _ := genLog(t, rng)
		b := rp.RecordBatches
		for i := 0; i+1 < len(flips); i += 2 {
			if len(b) > 0 {
				b[int(flips[i])*len(b)/256] ^= flips[i+1]
			}
		}
		if fix {
			start := 0
			for _, end := range bounds {
				if end-start >= 21 {
					fixCRC(b[start:end])
				}
				start = end
			}
		}
		sameAsOracle(t, rp, int64(from%64))
		sameAsOracle(t, &kmsg.FetchResponseTopicPartition{RecordBatches: flips}, int64(from%64))
	})
}

// TestParseCommittedAllocatesNothing: the parse allocates nothing per
// record nor per response (no aborted transactions, out reused): a
// restore's cost is the store's. A Rec handed by pointer to the callback
// escaped to the heap once per response.
func TestParseCommittedAllocatesNothing(t *testing.T) {
	var log []byte
	for b := range 4 {
		tb := testBatch{first: int64(b * 10), lastDelta: 9}
		for i := range 10 {
			tb.recs = append(tb.recs, testRec{int32(i), fmt.Appendf(nil, "k%d", i), []byte("v"), 3})
		}
		log = append(log, tb.encode(t)...)
	}
	rp := &kmsg.FetchResponseTopicPartition{RecordBatches: log}
	out := make([]KV, 0, 64)
	dec := kgo.DefaultDecompressor()
	var headers int
	if n := testing.AllocsPerRun(20, func() {
		var err error
		if out, _, err = ParseCommitted(rp, 0, dec, out); err != nil || len(out) != 40 {
			t.Fatal(err, len(out))
		}
		if _, err = EachCommitted(rp, 0, dec, func(r Rec) {
			h := r.Headers()
			for _, _, ok := h.Next(); ok; _, _, ok = h.Next() {
				headers++
			}
		}); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per parse", n)
	}
	if headers != 21*40*3 {
		t.Fatalf("%d headers seen", headers)
	}
}

// TestEachCommittedWhileStopsWhereTold: up to the record its fn refuses,
// EachCommittedWhile hands exactly what EachCommitted hands (so what
// franz-go decides), with each record's batch end; it reads nothing after
// it and returns its offset + 1. Never refused, it is EachCommitted.
func TestEachCommittedWhileStopsWhereTold(t *testing.T) {
	dec := kgo.DefaultDecompressor()
	for seed := range uint64(400) {
		rng := rand.New(rand.NewPCG(seed, 3))
		rp, _, end := genLog(t, rng)
		from := int64(rng.IntN(int(end) + 1))
		var all []Rec
		wantAt, wantErr := EachCommitted(cloneResp(rp), from, dec, func(r Rec) { all = append(all, r) })
		for _, stop := range []int{-1, 0, rng.IntN(len(all) + 1), len(all) - 1} {
			var got []Rec
			at, err := EachCommittedWhile(cloneResp(rp), from, dec, func(r Rec) bool {
				got = append(got, r)
				return len(got)-1 != stop
			})
			if stop < 0 || stop >= len(all) {
				if at != wantAt || (err == nil) != (wantErr == nil) || len(got) != len(all) {
					t.Fatalf("seed %d, never stopped: %d records to %d (%v), want %d to %d (%v)", seed, len(got), at, err, len(all), wantAt, wantErr)
				}
				continue
			}
			if err != nil || len(got) != stop+1 || at != all[stop].Offset+1 {
				t.Fatalf("seed %d, stop at record %d (offset %d): %d records, at %d, %v", seed, stop, all[stop].Offset, len(got), at, err)
			}
			for i := range got {
				if got[i].Offset != all[i].Offset || !bytes.Equal(got[i].Key, all[i].Key) || got[i].BatchLast < got[i].Offset {
					t.Fatalf("seed %d: record %d is %+v, want %+v", seed, i, got[i], all[i])
				}
			}
		}
	}
}
