package console

import (
	"context"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// openTxn is a commands partition whose last stable offset is below its
// end: a transaction is open there, and read_committed readers (the
// workers) cannot read past its first offset until it ends. A moment's
// is normal; one that stays is what the workers' hanging-transaction
// guard reports (and `kafka-transactions.sh abort` ends).
type openTxn struct {
	Partition          int32
	StableOffset, End  int64
	Producers          []openProducer
	DescribeProducersE string
}

type openProducer struct {
	ID        int64
	Epoch     int16
	StartAt   int64
	LastWrite string // RFC 3339, "-" if unknown
	Since     string // how long since its last write
}

// openTransactions lists the commands partitions held by an open
// transaction, with the producers that hold them (DescribeProducers).
func (c *Console) openTransactions(ctx context.Context) ([]openTxn, error) {
	topic := c.topic.Commands
	lso, err := c.adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = lso.Error()
	}
	if err != nil {
		return nil, err
	}
	hwm, err := c.adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = hwm.Error()
	}
	if err != nil {
		return nil, err
	}
	var out []openTxn
	set := kadm.TopicsSet{}
	for p, s := range lso[topic] {
		e, _ := hwm.Lookup(topic, p)
		if s.Offset < e.Offset {
			out = append(out, openTxn{Partition: p, StableOffset: s.Offset, End: e.Offset})
			set.Add(topic, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	if len(out) == 0 {
		return nil, nil
	}
	described, err := c.adm.DescribeProducers(ctx, set)
	for i := range out {
		if err != nil {
			out[i].DescribeProducersE = err.Error()
			continue
		}
		dp, ok := described[topic].Partitions[out[i].Partition]
		if !ok {
			continue
		}
		if dp.Err != nil {
			out[i].DescribeProducersE = dp.Err.Error()
			continue
		}
		for _, p := range dp.ActiveProducers.Sorted() {
			if p.CurrentTxnStartOffset < 0 {
				continue
			}
			op := openProducer{ID: p.ProducerID, Epoch: p.ProducerEpoch, StartAt: p.CurrentTxnStartOffset, LastWrite: "-", Since: "-"}
			if p.LastTimestamp > 0 {
				t := time.UnixMilli(p.LastTimestamp)
				op.LastWrite = t.UTC().Format(time.RFC3339)
				op.Since = time.Since(t).Round(time.Second).String()
			}
			out[i].Producers = append(out[i].Producers, op)
		}
	}
	return out, nil
}
