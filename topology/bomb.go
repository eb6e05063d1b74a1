package topology

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A record batch of the commands topic that decompresses past the
// consumer's bound (franz-go's MaxDecompressBatchBytes, 1 GiB by default)
// cannot be read: franz-go stops fetching its partition until the consumer
// is moved past it, and the broker, which checks only the compressed size,
// accepted it. Logged only, it stopped its partition for good. Its commands
// cannot be answered (no reply address can be read), so the processor moves
// its partition past the batch at once and writes a dead-letter pointer to
// it (key and value absent; kcqrs_dlq_topic, _partition and _offset name
// the batch's first offset) in its next transaction.

// skipUndecompressable moves the consumer past a batch it cannot
// decompress and remembers a pointer to dead-letter. It reports whether
// err was such a batch. Run loop only, between a poll and AllowRebalance.
func (p *Processor) skipUndecompressable(topic string, err error) bool {
	var tl *kgo.ErrDecompressTooLarge
	if topic != p.cfg.Topics.Commands || !errors.As(err, &tl) {
		return false
	}
	p.sess.Client().SetOffsets(map[string]map[int32]kgo.EpochOffset{topic: {tl.Partition: {Epoch: tl.Epoch, Offset: tl.NextOffset}}})
	for _, b := range p.undecompressable {
		if b.Partition == tl.Partition && b.Offset == tl.Offset {
			return true // seen again after an abort rewound the session
		}
	}
	p.log.Error("command batch decompresses past the consumer's bound: skipped, dead-lettered as a pointer",
		"partition", tl.Partition, "offset", tl.Offset, "next", tl.NextOffset)
	p.undecompressable = append(p.undecompressable, tl)
	return true
}

// deadLetterUndecompressable writes the pointers of the skipped batches of
// partitions this worker still owns into the open transaction. Owned is
// assigned, not loaded: a partition whose store still restores (at every
// start and rebalance) is fetched and has its offset moved past the batch
// all the same, and this transaction commits that offset.
func (p *Processor) deadLetterUndecompressable(b *batch) {
	p.mu.Lock()
	owned := make(map[int32]bool, len(p.undecompressable))
	for _, tl := range p.undecompressable {
		owned[tl.Partition] = p.assigned[tl.Partition] != 0
	}
	p.mu.Unlock()
	for _, tl := range p.undecompressable {
		if !owned[tl.Partition] {
			continue
		}
		r := &kgo.Record{Topic: tl.Topic, Partition: tl.Partition, Offset: tl.Offset}
		p.produceDeadLetter(b, r, fmt.Errorf("%s: the record batch at offsets %d to %d decompresses past the consumer's bound; its commands were skipped unread",
			CodeTooLarge, tl.Offset, tl.NextOffset-1), true)
	}
}
