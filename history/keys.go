package history

import (
	"encoding/binary"
	"hash/crc32"
	"math/bits"
)

// Key layout. The first byte says what a key is:
//
//	0x00 'c' partition(4, BE)                  -> next offset to index (8, BE)
//	0x00 't'                                   -> the events topic's id (16)
//	0x00 'f'                                   -> layout version (1 byte, formatVersion)
//	0x01 crc32c(stream)(4, BE) stream version(n, then n bytes BE) uvarint(partition) uvarint(offset)
//	                                           -> varint(timestamp ms)
//
// where stream is uvarint(len type) type uvarint(len id) id. Length
// prefixes make (type, id) pairs prefix-free (ids are Kafka keys: any
// bytes); the CRC-32C of the stream in front spreads the entries of one
// fetch evenly over the key space, so they are sorted into Pebble order by
// buckets of its top bits (sortEntries) and reach the memtable in order.
// The version, big-endian in as few bytes as it needs after a count of
// them, sorts an aggregate's entries in version order. The partition and
// offset in the key keep two records that claim the same version (a forged
// record, say, even one in another partition at the same offset) apart
// instead of letting the later overwrite the earlier: the reader checks
// each against its envelope. About 30 bytes per entry for ids of 8
// characters (layout 2: about 50).
// Layout 1 had no partition in the key, layout 2 fixed-width numbers and
// no CRC; an index of another layout is emptied when opened (it is rebuilt
// from the events topic).
const (
	metaPrefix  = 0x00
	entryPrefix = 0x01
)

var (
	topicIDKey = []byte{metaPrefix, 't'}
	formatKey  = []byte{metaPrefix, 'f'}
)

// formatVersion is the key layout written by this code.
const formatVersion = 3

func checkpointKey(part int32) []byte {
	return binary.BigEndian.AppendUint32([]byte{metaPrefix, 'c'}, uint32(part))
}

func streamPrefix(aggType, id string) []byte {
	return appendStream(make([]byte, 0, 5+2*binary.MaxVarintLen64+len(aggType)+len(id)+20), []byte(aggType), []byte(id))
}

// appendStream appends 0x01, the CRC-32C and the stream of (aggType, id).
func appendStream(k, aggType, id []byte) []byte {
	k = append(k, entryPrefix, 0, 0, 0, 0)
	at := len(k)
	k = binary.AppendUvarint(k, uint64(len(aggType)))
	k = append(k, aggType...)
	k = binary.AppendUvarint(k, uint64(len(id)))
	k = append(k, id...)
	binary.BigEndian.PutUint32(k[at-4:], crc32.Checksum(k[at:], crc32c))
	return k
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// appendVersion appends v >= 0 as a count n of bytes then v in n bytes,
// big-endian (0: the count 0 alone): byte order is numeric order.
func appendVersion(k []byte, v uint64) []byte {
	n := (bits.Len64(v) + 7) / 8
	k = append(k, byte(n))
	for i := n - 1; i >= 0; i-- {
		k = append(k, byte(v>>(8*i)))
	}
	return k
}

// versionEnd is above every encoded version (counts run 0..8).
const versionEnd = 9

// parseTail reads the version, partition and offset after a stream.
func parseTail(k []byte) (version int64, part int32, offset int64, ok bool) {
	if len(k) < 1 || k[0] > 8 || len(k) < 1+int(k[0]) {
		return 0, 0, 0, false
	}
	n := int(k[0])
	var v uint64
	for _, c := range k[1 : 1+n] {
		v = v<<8 | uint64(c)
	}
	k = k[1+n:]
	p, m := binary.Uvarint(k)
	if m <= 0 || p > 1<<31-1 {
		return 0, 0, 0, false
	}
	k = k[m:]
	o, m := binary.Uvarint(k)
	if m <= 0 || m != len(k) || o > 1<<63-1 || v > 1<<63-1 {
		return 0, 0, 0, false
	}
	return int64(v), int32(p), int64(o), true
}
