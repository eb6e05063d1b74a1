package history

import (
	"time"

	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/wire"
)

// The indexer and the scattered reads decode fetches with
// logread.EachCommitted (read_committed exactly as franz-go decides it, no
// kgo.Record per record); history only interprets the headers an index
// entry needs.

// eventOf returns the aggregate type and version of a committed record,
// ok=false when it does not carry what an index entry needs (as
// eventHeaders and Apply decide it for a kgo.Record: the last header of
// each name counts). aggType aliases the record: valid during the callback.
func eventOf(r *logread.Rec) (aggType []byte, version int64, ok bool) {
	var haveType, haveVersion bool
	h := r.Headers()
	for {
		k, v, more := h.Next()
		if !more {
			break
		}
		switch string(k) {
		case wire.HeaderAggregateType:
			aggType, haveType = v, true
		case wire.HeaderVersion:
			version, haveVersion = parseVersion(v)
		}
	}
	return aggType, version, haveType && len(aggType) > 0 && haveVersion && len(r.Key) > 0
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
// gives it (the index stored that before it parsed batches; so it still
// does).
func millis(ms int64) int64 { return time.Unix(0, ms*1e6).UnixMilli() }
