package topology

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Allocation of the records a command produces. A command's event and reply
// records each carry a few small header values; one allocation per value,
// per record and per header slice made them most of the processor's
// allocations (and so of its garbage collection). Both are made in bulk
// here, by the run loop only.

// outRecord is a record with room for its headers: one allocation for both.
type outRecord struct {
	kgo.Record
	headers [4]kgo.RecordHeader
}

// newOutRecord returns a record whose Headers has n (at most 4) entries in
// the record's own allocation.
func newOutRecord(n int) *outRecord {
	r := &outRecord{}
	r.Headers = r.headers[:n:n]
	return r
}

// smallBytes hands out copies of small header values from shared chunks.
// A copy is never written after it is handed out, so a full chunk is simply
// left to the garbage collector, which frees it once no produced record
// refers to it any more.
type smallBytes struct{ chunk []byte }

const (
	smallChunk = 8 << 10
	smallMax   = 256 // larger values get their own allocation
)

func (s *smallBytes) room(n int) {
	if cap(s.chunk)-len(s.chunk) < n {
		s.chunk = make([]byte, 0, smallChunk)
	}
}

// str returns a copy of v.
func (s *smallBytes) str(v string) []byte {
	if len(v) > smallMax {
		return []byte(v)
	}
	s.room(len(v))
	start := len(s.chunk)
	s.chunk = append(s.chunk, v...)
	return s.chunk[start:len(s.chunk):len(s.chunk)]
}

// itoa returns v in decimal.
func (s *smallBytes) itoa(v int64) []byte {
	s.room(20)
	start := len(s.chunk)
	s.chunk = strconv.AppendInt(s.chunk, v, 10)
	return s.chunk[start:len(s.chunk):len(s.chunk)]
}
