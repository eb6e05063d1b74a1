package topology

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A partition's fetch can stop for good without an error ever reaching the
// run loop: franz-go stops fetching a partition whose batch decompresses
// past its bound (bomb.go) and reports it once, in a fetch; but every
// SetOffsets (a deferral's rewind, a bomb's skip) discards the fetches
// buffered and not yet polled, of every partition. A report discarded so
// leaves its partition stopped, and every later command on it unanswered
// (TestDecompressionBombPointerCommitsWithTheSkip failed 3 runs in 12 under
// load). So the run loop watches for a commands partition it owns and does
// not pause that delivered nothing for stuckFetchAfter while the broker
// holds records past its position (two offsets or more: one is a
// transaction's marker; the same gap again within stuckFetchSameGap is
// most likely aborted records), and sets its offset to that position:
// SetOffsets re-enables a stopped fetch, and the report (or the records)
// come again. On a partition that was merely slow it re-fetches
// from its committed offset, which the processor's dedupe answers.

// stuckFetchAfter is how long an owned, unpaused commands partition may be
// behind the broker's last stable offset without delivering anything.
const stuckFetchAfter = 10 * time.Second

// stuckFetchSameGap spaces the restarts of a partition whose position and
// last stable offset did not change.
const stuckFetchSameGap = time.Minute

// stuckGap is a quiet partition's committed offset and last stable offset
// when its fetch was last restarted.
type stuckGap struct {
	at, end int64
	when    time.Time
}

// noteDelivered records the partitions a poll delivered records or an
// error for. Run loop only.
func (p *Processor) noteDelivered(fetches kgo.Fetches) {
	now := time.Now()
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if fp.Topic == p.cfg.Topics.Commands {
			p.delivered[fp.Partition] = now
		}
	})
}

// restartStuckFetches sets the offset of every owned, unpaused commands
// partition that delivered nothing for stuckFetchAfter while behind the
// broker's last stable offset (see above). Run loop only, between a poll
// and AllowRebalance; it asks the broker at most once per stuckFetchAfter.
func (p *Processor) restartStuckFetches(ctx context.Context) {
	now := time.Now()
	if now.Sub(p.stuckCheckedAt) < stuckFetchAfter {
		return
	}
	p.stuckCheckedAt = now
	topic := p.cfg.Topics.Commands
	cl := p.sess.Client()
	paused := map[int32]bool{}
	for _, part := range cl.PauseFetchPartitions(nil)[topic] {
		paused[part] = true
	}
	var quiet []int32
	p.mu.Lock()
	for part := range p.assigned {
		switch since, ok := p.delivered[part]; {
		case paused[part] || (ok && now.Sub(since) < stuckFetchAfter):
		case !ok:
			p.delivered[part] = now // first seen: give it stuckFetchAfter
		default:
			quiet = append(quiet, part)
		}
	}
	p.mu.Unlock()
	if len(quiet) == 0 {
		return
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	stable, err := adm.ListCommittedOffsets(actx, topic)
	if err != nil {
		p.log.Debug("checking quiet partitions", "err", err)
		return
	}
	// The committed offset, not the polled one: no transaction is open
	// between polls (runTxn ends its own), so everything before it was
	// processed and nothing after it was, while a deferral rewinds a
	// partition behind what was polled.
	committed := cl.CommittedOffsets()[topic]
	var starts kadm.ListedOffsets
	set := map[int32]kgo.EpochOffset{}
	for _, part := range quiet {
		end, ok := stable.Lookup(topic, part)
		if !ok || end.Err != nil {
			continue
		}
		at, known := committed[part]
		if !known { // nothing committed yet: the consumer starts at the log start
			if starts == nil {
				// Asked only then: an idle partition with a committed
				// offset (the usual quiet one) costs one request, not two.
				if starts, err = adm.ListStartOffsets(actx, topic); err != nil {
					p.log.Debug("checking quiet partitions", "err", err)
					continue // the others found so far are still restarted
				}
			}
			s, ok := starts.Lookup(topic, part)
			if !ok || s.Err != nil {
				continue
			}
			at = kgo.EpochOffset{Epoch: -1, Offset: s.Offset}
		}
		p.delivered[part] = now
		// One offset behind is a transaction's commit marker after the
		// last record (the saga's legs are transactional), which no
		// consumer is handed; and a gap that did not change since the
		// last restart is aborted records or markers, nothing stopped.
		last := p.restarted[part]
		if end.Offset-at.Offset < 2 || (last.at == at.Offset && last.end == end.Offset && now.Sub(last.when) < stuckFetchSameGap) {
			continue
		}
		p.restarted[part] = stuckGap{at: at.Offset, end: end.Offset, when: now}
		set[part] = at
		p.log.Info("commands partition delivered nothing while behind the broker: restarting its fetch",
			"partition", part, "position", at.Offset, "last_stable_offset", end.Offset, "quiet_for", stuckFetchAfter)
	}
	if len(set) > 0 {
		cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{topic: set})
	}
}
