package history_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// BenchmarkIndexApply: the Pebble side of indexing, per event, in batches
// of 500 events of 10,000 aggregates in topic order.
func BenchmarkIndexApply(b *testing.B) {
	idx, err := history.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer idx.Close()
	recs := make([]*kgo.Record, 500)
	versions := map[int]int{}
	b.ResetTimer()
	for i := 0; i < b.N; i += len(recs) {
		for j := range recs {
			a := (i + j) * 7919 % 10000
			versions[a]++
			recs[j] = &kgo.Record{Key: fmt.Appendf(nil, "acc-%d", a), Offset: int64(i + j), Timestamp: time.UnixMilli(1), Headers: []kgo.RecordHeader{
				{Key: wire.HeaderAggregateType, Value: []byte("account")},
				{Key: wire.HeaderVersion, Value: []byte(strconv.Itoa(versions[a]))},
			}}
		}
		if _, err := idx.Apply(0, recs, int64(i+len(recs))); err != nil {
			b.Fatal(err)
		}
	}
}
