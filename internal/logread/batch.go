package logread

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KV is one committed data record of a fetch, as ParseCommitted hands it
// over. Key and Value alias the fetch response (or the decompressed bytes
// of its batch): they must be copied to be kept past the next fetch's use.
// A nil Value is a tombstone (a null value); an empty value is not nil.
type KV struct {
	Offset     int64
	Key, Value []byte
}

// Rec is one committed data record as EachCommitted hands it to its
// callback, by value (a pointer handed to an unknown function would move
// it to the heap: one allocation per fetch). Key, Value and the headers
// alias the fetch response (or the decompressed bytes of its batch): valid
// only during the callback. A nil Value is a tombstone.
type Rec struct {
	Offset int64
	// TimestampMillis is the record's timestamp in Unix milliseconds: the
	// batch's max timestamp when the topic uses log-append time.
	TimestampMillis int64
	Key, Value      []byte
	// BatchLast is the last offset of the record's batch (math.MaxInt64
	// when not known: a message set older than magic 2).
	BatchLast int64

	hdrs  []byte             // the record's headers, after their count (v2)
	nhdrs int                // their count
	kh    []kgo.RecordHeader // the headers of a record franz-go decoded
}

// Headers iterates over the record's headers in order, allocating nothing
// (for a v2 record batch).
func (r *Rec) Headers() Headers { return Headers{src: r.hdrs, n: r.nhdrs, kh: r.kh} }

// Headers is an iterator over a Rec's headers; see Rec.Headers.
type Headers struct {
	src []byte
	n   int
	kh  []kgo.RecordHeader
}

// Next returns the next header's key and value (they alias the fetch
// response), ok=false past the last one.
func (h *Headers) Next() (key, value []byte, ok bool) {
	if len(h.kh) > 0 {
		k := h.kh[0]
		h.kh = h.kh[1:]
		return []byte(k.Key), k.Value, true
	}
	if h.n <= 0 {
		return nil, nil, false
	}
	h.n--
	// The parser checked the whole headers region: these reads succeed.
	r := kbin.Reader{Src: h.src}
	key, value = r.VarintBytes(), r.VarintBytes()
	h.src = r.Src
	return key, value, true
}

// errOldMagic: the response holds a message set older than record batches
// (magic 0 or 1), which EachCommitted leaves to franz-go.
var errOldMagic = errors.New("logread: message set older than magic 2")

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// ParseCommitted appends to out the committed data records of rp at or past
// from (EachCommitted's), and returns them with the fetch position after the
// response. A restore hands keys and values straight to the store, without a
// kgo.Record per record.
func ParseCommitted(rp *kmsg.FetchResponseTopicPartition, from int64, dec kgo.Decompressor, out []KV) ([]KV, int64, error) {
	out = out[:0]
	at, err := EachCommitted(rp, from, dec, func(r Rec) {
		out = append(out, KV{Offset: r.Offset, Key: r.Key, Value: r.Value})
	})
	return out, at, err
}

// EachCommitted decodes the record batches of one partition of a
// read_committed fetch response and hands fn, in offset order, each data
// record at or past from that is committed (not a control record, not in a
// transaction the response lists as aborted); it returns the fetch position
// after the response (past aborted batches, markers and compacted-away
// offsets). It decides exactly what kgo.ProcessFetchPartition with
// kgo.ReadCommitted decides (the tests and fuzz tests of logread and history
// use it as the oracle), without building a kgo.Record per record. A corrupt
// batch ends the parse with an error (fn may have had the records before
// it); a truncated last batch ends it without one. A response holding
// message sets older than magic 2 is decoded whole by
// kgo.ProcessFetchPartition (checked before fn sees any record).
func EachCommitted(rp *kmsg.FetchResponseTopicPartition, from int64, dec kgo.Decompressor, fn func(Rec)) (int64, error) {
	if hasOldMagic(rp.RecordBatches) {
		return franzGo(rp, from, dec, fn, nil)
	}
	return parseBatches(rp, from, dec, fn, nil)
}

// EachCommittedWhile is EachCommitted, except that it stops after the first
// record fn returns false for and returns that record's offset + 1: the
// records after it are not read (a scattered read that has what it wants
// from a batch skips the rest of it). Up to that record, what fn is handed
// is what EachCommitted hands.
func EachCommittedWhile(rp *kmsg.FetchResponseTopicPartition, from int64, dec kgo.Decompressor, fn func(Rec) bool) (int64, error) {
	if hasOldMagic(rp.RecordBatches) {
		return franzGo(rp, from, dec, nil, fn)
	}
	return parseBatches(rp, from, dec, nil, fn)
}

// hasOldMagic walks the batches as parseBatches does and reports whether
// it would meet a message set older than magic 2.
func hasOldMagic(in []byte) bool {
	for len(in) > 17 {
		length := int32(binary.BigEndian.Uint32(in[8:])) + 12
		if length < 0 || len(in) < int(length) {
			return false
		}
		if in[16] != 2 {
			return true
		}
		if length < batchHeader {
			return false // parseBatches stops there with an error
		}
		in = in[length:]
	}
	return false
}

// franzGo is EachCommitted by kgo.ProcessFetchPartition.
func franzGo(rp *kmsg.FetchResponseTopicPartition, from int64, dec kgo.Decompressor, fn func(Rec), while func(Rec) bool) (int64, error) {
	fp, at := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset:         from,
		IsolationLevel: kgo.ReadCommitted(),
	}, rp, dec, nil)
	for _, r := range fp.Records {
		rec := Rec{Offset: r.Offset, TimestampMillis: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value, BatchLast: math.MaxInt64, kh: r.Headers}
		if while != nil {
			if !while(rec) {
				return r.Offset + 1, nil
			}
		} else {
			fn(rec)
		}
	}
	return at, fp.Err
}

// errStop ends a parse that EachCommittedWhile's fn stopped.
var errStop = errors.New("logread: stopped")

const batchHeader = 61 // bytes of a v2 record batch before its records

// aborts lists, per producer, the first offsets of its aborted
// transactions in the response, ascending (kgo's aborter: a broker need not
// send them sorted).
type aborts map[int64][]int64

func parseBatches(rp *kmsg.FetchResponseTopicPartition, from int64, dec kgo.Decompressor, fn func(Rec), while func(Rec) bool) (int64, error) {
	var ab aborts
	if len(rp.AbortedTransactions) > 0 {
		ab = aborts{}
		for _, a := range rp.AbortedTransactions {
			ab[a.ProducerID] = append(ab[a.ProducerID], a.FirstOffset)
		}
		for pid := range ab {
			slices.Sort(ab[pid])
		}
	}
	pos := from
	kept := 0
	in := rp.RecordBatches
	for len(in) > 17 {
		length := int32(binary.BigEndian.Uint32(in[8:])) + 12
		if length < 0 || len(in) < int(length) {
			break // a partial batch at the end of the response
		}
		if in[16] != 2 {
			return pos, errOldMagic // hasOldMagic sent the response to franz-go
		}
		if length < batchHeader {
			return pos, errors.New("logread: unable to read record batch, not enough data")
		}
		b := in[:length]
		in = in[length:]
		if sum, want := crc32.Checksum(b[21:], crc32c), binary.BigEndian.Uint32(b[17:]); sum != want {
			return pos, fmt.Errorf("logread: encoded crc %x does not match calculated crc %x", int32(want), int32(sum))
		}
		var derr error
		pos, derr = parseBatch(b, pos, ab, dec, &kept, fn, while)
		if derr == errStop {
			return pos, nil
		}
		if derr != nil {
			var de *decompressErr
			if errors.As(derr, &de) && kept > 0 {
				// A truncated batch after good ones: keep what was
				// decoded (kgo does the same).
				break
			}
			return pos, derr
		}
	}
	return pos, nil
}

// decompressErr is a batch that does not decompress.
type decompressErr struct{ err error }

func (e *decompressErr) Error() string { return "logread: decompressing a batch: " + e.err.Error() }
func (e *decompressErr) Unwrap() error { return e.err }

// parseBatch decodes one whole record batch b (header checked), handing its
// kept records to fn (counted in kept) and moving pos, as kgo's
// processRecordBatch does.
func parseBatch(b []byte, pos int64, ab aborts, dec kgo.Decompressor, kept *int, fn func(Rec), while func(Rec) bool) (int64, error) {
	first := int64(binary.BigEndian.Uint64(b))
	attrs := int16(binary.BigEndian.Uint16(b[21:]))
	lastDelta := int32(binary.BigEndian.Uint32(b[23:]))
	firstTS := int64(binary.BigEndian.Uint64(b[27:]))
	maxTS := int64(binary.BigEndian.Uint64(b[35:]))
	pid := int64(binary.BigEndian.Uint64(b[43:]))
	num := int(int32(binary.BigEndian.Uint32(b[57:])))
	raw := b[batchHeader:]
	last := first + int64(lastDelta)
	if last < pos {
		return pos, nil // wholly below the fetch offset
	}
	if codec := kgo.CompressionCodecType(attrs & 7); codec != 0 {
		var err error
		if raw, err = dec.Decompress(raw, codec); err != nil {
			return pos, &decompressErr{err}
		}
	}
	if num < 0 {
		return pos, fmt.Errorf("logread: invalid record batch: negative record count %d", num)
	}
	if num > len(raw) {
		if len(raw) == 0 {
			return pos, fmt.Errorf("logread: invalid record batch: %d claimed records with no record bytes", num)
		}
		num = len(raw)
	}
	transactional := attrs&0b1_0000 != 0
	control := attrs&0b10_0000 != 0
	// kgo takes the batch's max timestamp unless the timestamp type is 0:
	// bit 3 (log-append time) or bit 7 (its "no timestamp", -1) set.
	logAppend := attrs&0b1000_1000 != 0
	aborted := false
	if transactional && len(ab) > 0 {
		if pa := ab[pid]; len(pa) > 0 && first >= pa[0] {
			aborted = true
		}
	}
	markerHandled := false
	decoded := 0
	for ; decoded < num; decoded++ {
		length, used := kbin.Varint(raw)
		total := used + int(length)
		if used <= 0 || length < 0 || len(raw) < total {
			break
		}
		r := kbin.Reader{Src: raw[used:total]}
		r.Int8() // record attributes, unused
		tsDelta := r.Varlong()
		delta := r.Varint()
		key := r.VarintBytes()
		value := r.VarintBytes()
		nh := int(r.VarintArrayLen())
		hdrs := r.Src
		for range max(nh, 0) {
			r.VarintBytes()
			r.VarintBytes()
		}
		if !r.Ok() {
			break // kgo ends the batch at a malformed record
		}
		raw = raw[total:]
		off := first + int64(delta)
		if first == -1 {
			off = -1
		}
		if off >= pos {
			if !control && !aborted {
				ts := firstTS + tsDelta
				if logAppend {
					ts = maxTS
				}
				rec := Rec{Offset: off, TimestampMillis: ts, Key: key, Value: value, BatchLast: last, hdrs: hdrs, nhdrs: nh}
				*kept++
				if while != nil {
					if !while(rec) {
						return off + 1, errStop
					}
				} else {
					fn(rec)
				}
			}
			pos = off + 1
		}
		if aborted && control && !markerHandled && len(key) >= 4 && key[2] == 0 && key[3] == 0 {
			// An abort marker ends the producer's first aborted
			// transaction listed (also below the fetch offset, as kgo).
			if pa := ab[pid]; len(pa) > 1 {
				ab[pid] = pa[1:]
			} else {
				delete(ab, pid)
			}
			markerHandled = true
		}
	}
	if decoded == num && pos < last+1 {
		// Compaction keeps a batch's last offset even when it removed
		// its last record (KAFKA-5443).
		pos = last + 1
	}
	return pos, nil
}
