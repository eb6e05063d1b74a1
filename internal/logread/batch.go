package logread

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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

// errOldMagic: the response holds a message set older than record batches
// (magic 0 or 1), which ParseCommitted leaves to franz-go.
var errOldMagic = errors.New("logread: message set older than magic 2")

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// ParseCommitted decodes the record batches of one partition of a
// read_committed fetch response, appending to out the data records at or
// past from that are committed (not control records, not in a transaction
// the response lists as aborted), and returns them with the fetch position
// after the response (past aborted batches, markers and compacted-away
// offsets). It decides exactly what kgo.ProcessFetchPartition with
// kgo.ReadCommitted decides (the tests and the fuzz test use it as the
// oracle), without building a kgo.Record per record: a restore hands keys
// and values straight to the store. A response holding message sets older
// than magic 2 is decoded by kgo.ProcessFetchPartition.
func ParseCommitted(rp *kmsg.FetchResponseTopicPartition, from int64, dec kgo.Decompressor, out []KV) ([]KV, int64, error) {
	out, at, err := parseBatches(rp, from, dec, out)
	if !errors.Is(err, errOldMagic) {
		return out, at, err
	}
	fp, at := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset:         from,
		IsolationLevel: kgo.ReadCommitted(),
	}, rp, dec, nil)
	if fp.Err != nil {
		return out[:0], at, fp.Err
	}
	out = out[:0]
	for _, r := range fp.Records {
		out = append(out, KV{Offset: r.Offset, Key: r.Key, Value: r.Value})
	}
	return out, at, nil
}

// aborts lists, per producer, the first offsets of its aborted
// transactions in the response, ascending (kgo's aborter: a broker need not
// send them sorted).
type aborts map[int64][]int64

func parseBatches(rp *kmsg.FetchResponseTopicPartition, from int64, dec kgo.Decompressor, out []KV) ([]KV, int64, error) {
	out = out[:0]
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
	in := rp.RecordBatches
	for len(in) > 17 {
		length := int32(binary.BigEndian.Uint32(in[8:])) + 12
		if length < 0 || len(in) < int(length) {
			break // a partial batch at the end of the response
		}
		if in[16] != 2 {
			return out, from, errOldMagic
		}
		if length < 61 {
			return out, pos, errors.New("logread: unable to read record batch, not enough data")
		}
		b := in[:length]
		in = in[length:]
		if sum, want := crc32.Checksum(b[21:], crc32c), binary.BigEndian.Uint32(b[17:]); sum != want {
			return out, pos, fmt.Errorf("logread: encoded crc %x does not match calculated crc %x", int32(want), int32(sum))
		}
		var derr error
		out, pos, derr = parseBatch(b, pos, ab, dec, out)
		if derr != nil {
			var de *decompressErr
			if errors.As(derr, &de) && len(out) > 0 {
				// A truncated batch after good ones: keep what was
				// decoded (kgo does the same).
				break
			}
			return out, pos, derr
		}
	}
	return out, pos, nil
}

// decompressErr is a batch that does not decompress.
type decompressErr struct{ err error }

func (e *decompressErr) Error() string { return "logread: decompressing a batch: " + e.err.Error() }
func (e *decompressErr) Unwrap() error { return e.err }

// parseBatch decodes one whole record batch b (header checked), appending
// its kept records to out and moving pos, as kgo's processRecordBatch does.
func parseBatch(b []byte, pos int64, ab aborts, dec kgo.Decompressor, out []KV) ([]KV, int64, error) {
	first := int64(binary.BigEndian.Uint64(b))
	attrs := int16(binary.BigEndian.Uint16(b[21:]))
	lastDelta := int32(binary.BigEndian.Uint32(b[23:]))
	pid := int64(binary.BigEndian.Uint64(b[43:]))
	num := int(int32(binary.BigEndian.Uint32(b[57:])))
	raw := b[61:]
	last := first + int64(lastDelta)
	if last < pos {
		return out, pos, nil // wholly below the fetch offset
	}
	if codec := kgo.CompressionCodecType(attrs & 7); codec != 0 {
		var err error
		if raw, err = dec.Decompress(raw, codec); err != nil {
			return out, pos, &decompressErr{err}
		}
	}
	if num < 0 {
		return out, pos, fmt.Errorf("logread: invalid record batch: negative record count %d", num)
	}
	if num > len(raw) {
		if len(raw) == 0 {
			return out, pos, fmt.Errorf("logread: invalid record batch: %d claimed records with no record bytes", num)
		}
		num = len(raw)
	}
	transactional := attrs&0b1_0000 != 0
	control := attrs&0b10_0000 != 0
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
		r.Int8()
		r.Varlong()
		delta := r.Varint()
		key := r.VarintBytes()
		value := r.VarintBytes()
		if nh := int(r.VarintArrayLen()); nh > 0 {
			for range nh {
				r.VarintBytes()
				r.VarintBytes()
			}
		}
		if !r.Ok() {
			break
		}
		raw = raw[total:]
		off := first + int64(delta)
		if first == -1 {
			off = -1
		}
		if off >= pos {
			if !control && !aborted {
				out = append(out, KV{Offset: off, Key: key, Value: value})
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
	return out, pos, nil
}
