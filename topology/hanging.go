package topology

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// hangingTxn tracks one input partition whose last stable offset is below
// its high watermark.
type hangingTxn struct {
	lso, hwm int64
	since    time.Time
	reported time.Time // zero until reported
	ids      []int64
	epochs   []int16
}

// HangingTransaction describes an input partition blocked by an open
// transaction (see Processor.HangingTransactions).
type HangingTransaction struct {
	Topic     string
	Partition int32
	// StableOffset is where the last stable offset has been stuck since
	// Since; HighWatermark is the partition's end.
	StableOffset, HighWatermark int64
	Since                       time.Time
	// ProducerIDs are the producers with a transaction open at
	// StableOffset (from DescribeProducers; empty if the broker could not
	// tell).
	ProducerIDs []int64
	// ProducerEpochs are their epochs, in the same order.
	ProducerEpochs []int16
}

// HangingTransactions returns the owned command partitions whose last
// stable offset has been stuck below the high watermark for longer than
// Config.HangingTxnThreshold.
func (p *Processor) HangingTransactions() []HangingTransaction {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []HangingTransaction
	for part, h := range p.hanging {
		if h.reported.IsZero() {
			continue
		}
		out = append(out, HangingTransaction{Topic: p.cfg.Topics.Commands, Partition: part, StableOffset: h.lso, HighWatermark: h.hwm, Since: h.since,
			ProducerIDs: h.ids, ProducerEpochs: h.epochs})
	}
	return out
}

// watchHanging checks the owned command partitions every quarter of the
// threshold. A read_committed consumer never reads past the last stable
// offset, so a transaction left open (a producer that died without the
// broker aborting it: the "hanging transaction" of KIP-664) stops the
// partition for good: nothing else would tell the operator.
func (p *Processor) watchHanging(ctx context.Context) {
	th := p.cfg.HangingTxnThreshold
	if th < 0 {
		return
	}
	every := th / 4
	if every > 30*time.Second {
		every = 30 * time.Second
	}
	if every < 50*time.Millisecond {
		every = 50 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.checkHanging(ctx, th)
	}
}

func (p *Processor) checkHanging(ctx context.Context, th time.Duration) {
	topic := p.cfg.Topics.Commands
	ends, err := p.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return
	}
	stable, err := p.adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return
	}
	now := time.Now()
	var report []int32
	p.mu.Lock()
	for part := range p.hanging {
		if p.assigned[part] == 0 {
			delete(p.hanging, part)
		}
	}
	for part := range p.assigned {
		eo, ok1 := ends.Lookup(topic, part)
		so, ok2 := stable.Lookup(topic, part)
		if !ok1 || !ok2 || eo.Err != nil || so.Err != nil {
			continue
		}
		h := p.hanging[part]
		if so.Offset >= eo.Offset {
			delete(p.hanging, part)
			continue
		}
		if h == nil || h.lso != so.Offset {
			p.hanging[part] = &hangingTxn{lso: so.Offset, hwm: eo.Offset, since: now}
			continue
		}
		h.hwm = eo.Offset
		if now.Sub(h.since) >= th && (h.reported.IsZero() || now.Sub(h.reported) >= th) {
			if h.reported.IsZero() {
				p.stats.HangingTransactions++
			}
			h.reported = now
			report = append(report, part)
		}
	}
	p.mu.Unlock()
	if len(report) == 0 {
		return
	}
	producers := p.openProducers(ctx, topic, report)
	for _, part := range report {
		p.mu.Lock()
		h := p.hanging[part]
		var lso, hwm int64
		var since time.Time
		if h != nil {
			lso, hwm, since = h.lso, h.hwm, h.since
		}
		p.mu.Unlock()
		var ids []int64
		var epochs []int16
		for _, d := range producers[part] {
			if d.CurrentTxnStartOffset >= 0 && d.CurrentTxnStartOffset <= lso {
				ids = append(ids, d.ProducerID)
				epochs = append(epochs, d.ProducerEpoch)
			}
		}
		p.mu.Lock()
		if h := p.hanging[part]; h != nil {
			h.ids, h.epochs = ids, epochs
		}
		p.mu.Unlock()
		p.log.Error("HANGING TRANSACTION: an open transaction blocks this command partition for every read_committed reader; abort it (see docs/operations.md, Hanging transactions)",
			"topic", topic, "partition", part, "stable_offset", lso, "high_watermark", hwm,
			"stuck_for", now.Sub(since).Round(time.Second), "producer_ids", ids, "producer_epochs", epochs)
	}
}

// openProducers describes the producers of the given partitions; nil (and
// a warning) if the broker cannot tell.
func (p *Processor) openProducers(ctx context.Context, topic string, parts []int32) map[int32][]kadm.DescribedProducer {
	set := kadm.TopicsSet{}
	set.Add(topic, parts...)
	described, err := p.adm.DescribeProducers(ctx, set)
	if err != nil {
		p.log.Warn("hanging transaction: cannot describe producers", "err", err)
		return nil
	}
	out := map[int32][]kadm.DescribedProducer{}
	for _, part := range parts {
		dp, ok := described[topic].Partitions[part]
		if !ok || dp.Err != nil {
			continue
		}
		for _, d := range dp.ActiveProducers {
			out[part] = append(out[part], d)
		}
	}
	return out
}
