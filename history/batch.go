package history

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/wire"
)

// A minimal reader of the record batches of one fetched partition, for the
// indexer: it looks only at what the index needs (offset, key, timestamp,
// the aggregate type and version headers) and allocates nothing per record,
// where kgo.ProcessFetchPartition builds a kgo.Record (and its headers) for
// every record. It keeps franz-go's read_committed semantics exactly (the
// aborted transactions of the response, control batches, compression,
// truncated and corrupt batches, the next offset to fetch): FuzzParseBatches
// checks it against kgo.ProcessFetchPartition. Message sets older than
// record batch v2 (magic 0 and 1, which no kcqrs processor writes) are left
// to franz-go (errOldMagic).

// errOldMagic: the partition holds a message set older than record batch
// v2; the caller decodes it with kgo.ProcessFetchPartition.
var errOldMagic = errors.New("history: message set older than record batch v2")

// rawEvent is what the index needs of one committed record. Key and AggType
// alias the fetch response (or its decompressed batch): valid only during
// the callback.
type rawEvent struct {
	Offset          int64
	TimestampMillis int64
	Key             []byte
	Value           []byte
	AggType         []byte // last kcqrs_aggregate_type header (nil: none)
	Version         int64  // last kcqrs_version header, parsed
	HasType         bool
	HasVersion      bool // a kcqrs_version header parsed as a number > 0
}

// event reports whether the record carries what an index entry needs (as
// eventHeaders and Apply decide it for a kgo.Record).
func (e *rawEvent) event() bool {
	return e.HasType && len(e.AggType) > 0 && e.HasVersion && len(e.Key) > 0
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

const batchHeader = 61 // bytes of a v2 record batch before its records

// parseBatches hands fn each committed record (read_committed; control
// records never) of rp at or past offset from, in offset order, and
// returns the next offset to fetch, as kgo.ProcessFetchPartition does with
// IsolationLevel ReadCommitted. A corrupt batch ends the parse with an
// error (the offset returned is where it stopped); a truncated last batch
// ends it without one.
func parseBatches(rp *kmsg.FetchResponseTopicPartition, from int64, dec kgo.Decompressor, fn func(*rawEvent)) (int64, error) {
	next := from
	var aborted map[int64][]int64
	if len(rp.AbortedTransactions) > 0 {
		aborted = make(map[int64][]int64)
		for _, a := range rp.AbortedTransactions {
			aborted[a.ProducerID] = append(aborted[a.ProducerID], a.FirstOffset)
		}
		for pid := range aborted {
			slices.Sort(aborted[pid])
		}
	}
	var ev rawEvent
	kept := 0
	in := rp.RecordBatches
	for len(in) > 17 {
		length := int32(binary.BigEndian.Uint32(in[8:])) + 12
		if length < 0 || len(in) < int(length) {
			break // truncated
		}
		if in[16] != 2 {
			return next, errOldMagic
		}
		if length < batchHeader {
			return next, fmt.Errorf("history: unable to read record batch, not enough data")
		}
		b := in[:length]
		in = in[length:]
		if crc := binary.BigEndian.Uint32(b[17:]); crc32.Checksum(b[21:], crc32c) != crc {
			return next, fmt.Errorf("history: record batch crc mismatch")
		}
		first := int64(binary.BigEndian.Uint64(b))
		attrs := int16(binary.BigEndian.Uint16(b[21:]))
		lastOffset := first + int64(int32(binary.BigEndian.Uint32(b[23:])))
		firstTS := int64(binary.BigEndian.Uint64(b[27:]))
		maxTS := int64(binary.BigEndian.Uint64(b[35:]))
		pid := int64(binary.BigEndian.Uint64(b[43:]))
		numRecords := int(int32(binary.BigEndian.Uint32(b[57:])))
		raw := b[batchHeader:]
		if lastOffset < next {
			continue // wholly below the offset asked for
		}
		if codec := kgo.CompressionCodecType(attrs & 0x07); codec != 0 {
			out, err := dec.Decompress(raw, codec)
			if err != nil {
				if kept > 0 {
					break // a partial batch after whole ones
				}
				return next, fmt.Errorf("history: decompressing batch at %d: %w", first, err)
			}
			raw = out
		}
		if numRecords < 0 {
			return next, fmt.Errorf("history: invalid record batch: negative record count %d", numRecords)
		}
		if numRecords > len(raw) {
			if len(raw) == 0 {
				return next, fmt.Errorf("history: invalid record batch: %d claimed records with no record bytes", numRecords)
			}
			numRecords = len(raw)
		}
		abort := false
		if attrs&0x10 != 0 && len(aborted[pid]) > 0 && first >= aborted[pid][0] {
			abort = true
		}
		control := attrs&0x20 != 0
		logAppend := attrs&0x08 != 0
		markerHandled := false
		n := 0
		for ; n < numRecords; n++ {
			var ok bool
			var isAbortMarker bool
			raw, ok, isAbortMarker = parseRecord(raw, &ev, first, firstTS, maxTS, logAppend, control)
			if !ok {
				break
			}
			if ev.Offset >= next {
				if !control && !abort {
					fn(&ev)
					kept++
				}
				next = ev.Offset + 1
			}
			if abort && !markerHandled && control && isAbortMarker {
				if rest := aborted[pid][1:]; len(rest) == 0 {
					delete(aborted, pid)
				} else {
					aborted[pid] = rest
				}
				markerHandled = true
			}
		}
		if n == numRecords && next < lastOffset+1 {
			next = lastOffset + 1
		}
	}
	return next, nil
}

// parseRecord reads one record of a v2 batch into ev and returns the rest,
// with franz-go's decoding (kbin, as in kgo's readRawRecordsDirect).
// ok=false: truncated or malformed (the batch ends there, as in franz-go).
func parseRecord(in []byte, ev *rawEvent, first, firstTS, maxTS int64, logAppend, control bool) (rest []byte, ok, abortMarker bool) {
	length, used := kbin.Varint(in)
	total := used + int(length)
	if used <= 0 || length < 0 || len(in) < total {
		return in, false, false
	}
	b := kbin.Reader{Src: in[used:total]}
	b.Int8() // record attributes, unused
	tsDelta := b.Varlong()
	offDelta := b.Varint()
	key := b.VarintBytes()
	value := b.VarintBytes()
	*ev = rawEvent{Key: key, Value: value}
	if nh := int(b.VarintArrayLen()); nh > 0 {
		for range nh {
			hk, hv := b.VarintBytes(), b.VarintBytes()
			switch {
			case string(hk) == wire.HeaderAggregateType:
				ev.AggType, ev.HasType = hv, true
			case string(hk) == wire.HeaderVersion:
				ev.Version, ev.HasVersion = parseVersion(hv)
			}
		}
	}
	if !b.Ok() {
		return in, false, false
	}
	if first == -1 {
		ev.Offset = -1
	} else {
		ev.Offset = first + int64(offDelta)
	}
	if logAppend {
		ev.TimestampMillis = maxTS
	} else {
		ev.TimestampMillis = firstTS + tsDelta
	}
	abortMarker = control && len(key) >= 4 && key[2] == 0 && key[3] == 0
	return in[total:], true, abortMarker
}

// parseVersion is strconv.ParseInt(s, 10, 64) with the result > 0, without
// the string.
func parseVersion(s []byte) (int64, bool) {
	if len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	if len(s) == 0 {
		return 0, false
	}
	var v int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if v > (1<<63-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, v > 0
}

// millis is the record timestamp as a kgo.Record's Timestamp.UnixMilli()
// gives it (the index stored that before parseBatches; so it still does).
func millis(ms int64) int64 { return time.Unix(0, ms*1e6).UnixMilli() }
