package history

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/wire"
)

// The oracle for logread.EachCommitted with eventOf is franz-go's own decoding:
// kgo.ProcessFetchPartition (read_committed) followed by eventHeaders, as
// the indexer used it before. genPartition builds fetch responses from a
// byte source: transactional, aborted and committed batches with their
// markers, control records, every compression codec, log-append time,
// overlapping aborted-transaction lists, hostile headers, and then perhaps
// a flipped byte or a cut tail.

type byteSource struct {
	b []byte
	i int
}

func (s *byteSource) n(k int) int {
	if k <= 1 {
		return 0
	}
	if s.i >= len(s.b) {
		return 0
	}
	v := int(s.b[s.i])
	s.i++
	return v % k
}

var fuzzKeys = [][]byte{nil, {}, []byte("acc-1"), []byte("acc-2"), []byte("\x00\xff")}
var fuzzHeaderVals = [][]byte{nil, {}, []byte("account"), []byte("1"), []byte("2"), []byte("+3"), []byte("-1"), []byte("0"),
	[]byte("007"), []byte("x1"), []byte("9223372036854775807"), []byte("9223372036854775808"), []byte("99999999999999999999")}
var fuzzHeaderKeys = []string{wire.HeaderAggregateType, wire.HeaderVersion, wire.HeaderEventType, "other", ""}

func appendRecord(dst []byte, tsDelta int64, offDelta int32, key, value []byte, headers [][2][]byte) []byte {
	var r []byte
	r = append(r, 0)
	r = binary.AppendVarint(r, tsDelta)
	r = binary.AppendVarint(r, int64(offDelta))
	appendBytes := func(b []byte) {
		if b == nil {
			r = binary.AppendVarint(r, -1)
			return
		}
		r = binary.AppendVarint(r, int64(len(b)))
		r = append(r, b...)
	}
	appendBytes(key)
	appendBytes(value)
	r = binary.AppendVarint(r, int64(len(headers)))
	for _, h := range headers {
		r = binary.AppendVarint(r, int64(len(h[0])))
		r = append(r, h[0]...)
		appendBytes(h[1])
	}
	dst = binary.AppendVarint(dst, int64(len(r)))
	return append(dst, r...)
}

var codecs = []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}

var compressors = make([]kgo.Compressor, len(codecs)) // tests do not run in parallel

func genPartition(t testing.TB, s *byteSource) (*kmsg.FetchResponseTopicPartition, int64) {
	rp := kmsg.NewFetchResponseTopicPartition()
	rp.LastStableOffset = 1 << 40
	offset := int64(s.n(4))
	var out []byte
	for range s.n(7) {
		attrs := int16(0)
		txn := s.n(2) == 1
		control := txn && s.n(3) == 0
		if txn {
			attrs |= 0x10
		}
		if control {
			attrs |= 0x20
		}
		if s.n(5) == 0 {
			attrs |= 0x08
		}
		if s.n(9) == 0 {
			attrs |= 0x80 // kgo's timestamp type -1: the max timestamp too
		}
		pid := int64(s.n(3))
		n := 1 + s.n(5)
		if control {
			n = 1 + s.n(2)
		}
		var recs []byte
		gap := int32(0)
		for i := range n {
			if s.n(4) == 0 {
				gap += int32(s.n(3))
			}
			if control {
				key := []byte{0, 0, 0, byte(s.n(2))} // abort (0) or commit (1)
				recs = appendRecord(recs, int64(s.n(3)), int32(i)+gap, key, []byte{0, 0, 0, 0, 0, 0}, nil)
				continue
			}
			var hs [][2][]byte
			for range s.n(5) {
				hs = append(hs, [2][]byte{[]byte(fuzzHeaderKeys[s.n(len(fuzzHeaderKeys))]), fuzzHeaderVals[s.n(len(fuzzHeaderVals))]})
			}
			recs = appendRecord(recs, int64(s.n(1000))-10, int32(i)+gap, fuzzKeys[s.n(len(fuzzKeys))], []byte("v"), hs)
		}
		lastDelta := int32(n-1) + gap + int32(s.n(3))
		if c := s.n(len(codecs)); c > 0 && !control {
			comp := compressors[c]
			if comp == nil {
				var err error
				if comp, err = kgo.DefaultCompressor(codecs[c]); err != nil {
					t.Fatal(err)
				}
				compressors[c] = comp
			}
			var buf bytes.Buffer
			z, typ := comp.Compress(&buf, recs)
			recs = append([]byte(nil), z...)
			attrs |= int16(typ)
		}
		b := kmsg.RecordBatch{FirstOffset: offset, Magic: 2, Attributes: attrs, LastOffsetDelta: lastDelta,
			FirstTimestamp: int64(s.n(100)) + 1_700_000_000_000, MaxTimestamp: 1_800_000_000_000 + int64(s.n(100)),
			ProducerID: pid, NumRecords: int32(n - s.n(2) + s.n(2)), Records: recs}
		b.Length = int32(49 + len(recs))
		enc := b.AppendTo(nil)
		binary.BigEndian.PutUint32(enc[17:], crc32.Checksum(enc[21:], crc32.MakeTable(crc32.Castagnoli)))
		out = append(out, enc...)
		if s.n(3) == 0 {
			rp.AbortedTransactions = append(rp.AbortedTransactions, kmsg.FetchResponseTopicPartitionAbortedTransaction{ProducerID: pid, FirstOffset: offset - int64(s.n(3))})
		}
		offset += int64(lastDelta) + 1 + int64(s.n(2))
	}
	switch s.n(6) {
	case 0:
		if len(out) > 0 {
			out[s.n(256)*len(out)/256] ^= byte(1 + s.n(255))
		}
	case 1:
		out = out[:len(out)-min(len(out), s.n(40))]
	}
	rp.RecordBatches = out
	return &rp, int64(s.n(6))
}

type parsed struct {
	Offset, TS, Version int64
	Key, Type           string
	OK                  bool
}

func oracle(rp *kmsg.FetchResponseTopicPartition, from int64) ([]parsed, int64, bool) {
	fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: from, IsolationLevel: kgo.ReadCommitted(), Topic: "events"}, rp, kgo.DefaultDecompressor(), nil)
	var out []parsed
	for _, r := range fp.Records {
		typ, v, ok := eventHeaders(r)
		ok = ok && len(r.Key) > 0
		p := parsed{Offset: r.Offset, TS: r.Timestamp.UnixMilli(), Key: string(r.Key), OK: ok}
		if ok {
			p.Type, p.Version = typ, v
		}
		out = append(out, p)
	}
	return out, next, fp.Err != nil
}

func ours(rp *kmsg.FetchResponseTopicPartition, from int64) ([]parsed, int64, bool) {
	var out []parsed
	next, err := logread.EachCommitted(rp, from, kgo.DefaultDecompressor(), func(r logread.Rec) {
		typ, v, ok := eventOf(&r)
		p := parsed{Offset: r.Offset, TS: millis(r.TimestampMillis), Key: string(r.Key), OK: ok}
		if ok {
			p.Type, p.Version = string(typ), v
		}
		out = append(out, p)
	})
	return out, next, err != nil
}

// checkAgainstOracle: message sets older than magic 2 are compared too
// (EachCommitted hands them to franz-go, headers and timestamps included).
func checkAgainstOracle(t testing.TB, rp *kmsg.FetchResponseTopicPartition, from int64) {
	want, wantNext, wantErr := oracle(rp, from)
	got, gotNext, gotErr := ours(rp, from)
	if fmt.Sprint(got) != fmt.Sprint(want) || gotNext != wantNext || gotErr != wantErr {
		t.Fatalf("from %d:\nours   %v next %d err %v\nkgo    %v next %d err %v", from, got, gotNext, gotErr, want, wantNext, wantErr)
	}
}

// TestParseBatchesMatchesFranzGo runs the generator over many seeds.
func TestParseBatchesMatchesFranzGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	kept, aborted := 0, 0
	for range 20000 {
		b := make([]byte, 200)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		rp, from := genPartition(t, &byteSource{b: b})
		checkAgainstOracle(t, rp, from)
		want, _, _ := oracle(rp, from)
		kept += len(want)
		aborted += len(rp.AbortedTransactions)
	}
	if kept == 0 || aborted == 0 {
		t.Fatalf("the generator made nothing to compare (records %d, aborted transactions %d)", kept, aborted)
	}
}

func FuzzParseBatches(f *testing.F) {
	f.Add([]byte{1, 3, 1, 1, 0, 2, 4, 1, 1, 1, 1, 1, 3, 2})
	f.Add([]byte{0, 5, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17})
	f.Fuzz(func(t *testing.T, data []byte) {
		rp, from := genPartition(t, &byteSource{b: data})
		checkAgainstOracle(t, rp, from)
		// The same bytes taken as a raw response too.
		raw := kmsg.NewFetchResponseTopicPartition()
		raw.RecordBatches = data
		checkAgainstOracle(t, &raw, from)
	})
}

// benchBatch is one processor-shaped record batch of 125 events.
func benchBatch() *kmsg.FetchResponseTopicPartition {
	var recs []byte
	for i := range 125 {
		recs = appendRecord(recs, int64(i), int32(i), fmt.Appendf(nil, "acc-%d", i*7919%10000), bytes.Repeat([]byte{'v'}, 81), [][2][]byte{
			{[]byte(wire.HeaderEventType), []byte("MoneyDeposited")},
			{[]byte(wire.HeaderAggregateType), []byte("account")},
			{[]byte(wire.HeaderVersion), []byte(fmt.Sprint(1 + i))},
		})
	}
	b := kmsg.RecordBatch{FirstOffset: 1000, Magic: 2, Attributes: 0x10, LastOffsetDelta: 124, FirstTimestamp: 1, MaxTimestamp: 2, ProducerID: 7, NumRecords: 125, Records: recs}
	b.Length = int32(49 + len(recs))
	enc := b.AppendTo(nil)
	binary.BigEndian.PutUint32(enc[17:], crc32.Checksum(enc[21:], crc32.MakeTable(crc32.Castagnoli)))
	rp := kmsg.NewFetchResponseTopicPartition()
	rp.RecordBatches = enc
	return &rp
}

// BenchmarkDecodeBatchForOneRecord: what a scattered read of History
// spends on the client to get one record out of its fetched batch, with
// franz-go's decoding (every record) and with logread.EachCommitted (one).
func BenchmarkDecodeBatchForOneRecord(b *testing.B) {
	rp := benchBatch()
	b.Run("kgo", func(b *testing.B) {
		for b.Loop() {
			fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: 1050, IsolationLevel: kgo.ReadCommitted(), Topic: "events"}, rp, kgo.DefaultDecompressor(), nil)
			if len(fp.Records) != 75 {
				b.Fatal(len(fp.Records))
			}
		}
	})
	b.Run("EachCommitted", func(b *testing.B) {
		for b.Loop() {
			var got *kgo.Record
			if _, err := logread.EachCommitted(rp, 1050, kgo.DefaultDecompressor(), func(r logread.Rec) {
				if r.Offset == 1050 {
					got = &kgo.Record{Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value), Offset: r.Offset}
				}
			}); err != nil || got == nil {
				b.Fatal(err)
			}
		}
	})
}
