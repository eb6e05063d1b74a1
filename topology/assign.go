package topology

import (
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/internal/logread"
)

// Assignment and ownership. The group's callbacks (onAssigned, onRevoked)
// keep p.assigned; franz-go's GroupTransactSession skips the revoke callback
// while its own revoked flag is set, and clears that flag only in End, which
// an idle worker never calls. So watchOwnership also reconciles p.assigned
// with the group's real assignment.

func (p *Processor) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, part := range assigned[p.cfg.Topics.Commands] {
		p.gen++
		p.assigned[part] = p.gen
		p.progress[part] = &PartitionState{Partition: part, Role: RoleActive}
	}
	p.joined = true
	p.log.Info("partitions assigned", "partitions", assigned[p.cfg.Topics.Commands])
	p.tail.wake()
}

func (p *Processor) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, part := range revoked[p.cfg.Topics.Commands] {
		p.disownLocked(part)
	}
	p.log.Info("partitions revoked", "partitions", revoked[p.cfg.Topics.Commands])
}

// disownLocked forgets that this worker owns part (p.mu held).
func (p *Processor) disownLocked(part int32) {
	delete(p.assigned, part)
	if ps := p.progress[part]; ps != nil && ps.Role == RoleActive {
		delete(p.progress, part)
	}
}

// closeRevoked hands the stores of partitions this worker no longer owns to
// the changelog tailer, which keeps tailing those it is a standby for and
// closes the others. They stay on disk: if the partition comes back, only
// the tail is read.
func (p *Processor) closeRevoked() {
	p.mu.Lock()
	var gone []*partitionState
	for part, ps := range p.parts {
		if _, ok := p.assigned[part]; !ok {
			ps.state = revoked
			gone = append(gone, ps)
			delete(p.parts, part)
			delete(p.active, part)
			delete(p.unreadable, part)
		}
	}
	p.mu.Unlock()
	if len(gone) > 0 {
		// The tailer writes what it is given: the writes queued for
		// these stores land first (applier.go).
		p.drainApplies()
	}
	for _, ps := range gone {
		p.states.dropPartition(ps.p)
		if h := p.cfg.hooks; h != nil && h.handOver != nil {
			h.handOver(ps.p)
		}
		p.tail.give(ps.p, ps.store)
	}
}

func (p *Processor) closeStores() {
	p.closeApplier()
	for part, ps := range p.parts {
		p.states.dropPartition(part)
		if err := ps.store.Close(); err != nil {
			p.log.Warn("closing store", "partition", part, "err", err)
		}
		delete(p.parts, part)
	}
	p.mu.Lock()
	clear(p.active)
	p.mu.Unlock()
}

// watchOwnership reconciles ownership with the group's assignment every
// StandbyInterval (at least every second).
func (p *Processor) watchOwnership(ctx context.Context) {
	every := min(p.cfg.StandbyInterval, time.Second)
	if every <= 0 {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.checkOwnership(ctx)
	}
}

// checkOwnership drops the partitions the group's current (stable)
// assignment does not give to this member. It only removes: an assignment
// arrives through onAssigned. A check that raced with an assignment (our
// generation or assignment counter moved while describing) does nothing.
func (p *Processor) checkOwnership(ctx context.Context) {
	cl := p.sess.Client()
	member, gen := cl.GroupMetadata()
	if member == "" {
		return
	}
	p.mu.Lock()
	before := p.gen
	p.mu.Unlock()
	owned, ok := p.describedAssignment(ctx, member)
	if !ok {
		return
	}
	if m2, g2 := cl.GroupMetadata(); m2 != member || g2 != gen {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen != before {
		return
	}
	var dropped []int32
	for part := range p.assigned {
		if !owned[part] {
			p.disownLocked(part)
			dropped = append(dropped, part)
		}
	}
	if len(dropped) > 0 {
		p.stats.OwnershipCorrections += int64(len(dropped))
		p.log.Warn("partitions no longer assigned to this worker although no revoke was reported; dropped", "partitions", dropped, "generation", gen)
	}
}

// describedAssignment returns this member's partitions of the command topic
// in the group's current, settled assignment: a stable classic group of this
// balancer, or a stable KIP-848 consumer group whose member has reconciled
// its target assignment. ok is false when the group cannot tell.
func (p *Processor) describedAssignment(ctx context.Context, member string) (map[int32]bool, bool) {
	owned := map[int32]bool{}
	groups, err := p.adm.DescribeGroups(ctx, p.cfg.Group)
	if err != nil {
		return nil, false
	}
	if g, ok := groups[p.cfg.Group]; ok && g.Err == nil && g.Protocol == kgo.CooperativeStickyBalancer().ProtocolName() {
		if g.State != "Stable" {
			return nil, false
		}
		i := slices.IndexFunc(g.Members, func(m kadm.DescribedGroupMember) bool { return m.MemberID == member })
		if i < 0 {
			return nil, false
		}
		ca, ok := g.Members[i].Assigned.AsConsumer()
		if !ok {
			return nil, false
		}
		for _, t := range ca.Topics {
			if t.Topic == p.cfg.Topics.Commands {
				for _, part := range t.Partitions {
					owned[part] = true
				}
			}
		}
		return owned, true
	}
	// A KIP-848 group: describe it raw, since its assignments name topics
	// by id (and kadm matches them by name).
	desc, err := logread.Describe(ctx, p.admCl, p.cfg.Topics.Commands, 0)
	if err != nil {
		return nil, false
	}
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Groups = []string{p.cfg.Group}
	resp, err := req.RequestWith(ctx, p.admCl)
	if err != nil || len(resp.Groups) != 1 {
		return nil, false
	}
	g := resp.Groups[0]
	if g.ErrorCode != 0 || g.State != "Stable" {
		return nil, false
	}
	i := slices.IndexFunc(g.Members, func(m kmsg.ConsumerGroupDescribeResponseGroupMember) bool { return m.MemberID == member })
	if i < 0 {
		return nil, false
	}
	parts := func(a kmsg.Assignment) map[int32]bool {
		out := map[int32]bool{}
		for _, tp := range a.TopicPartitions {
			if tp.Topic == p.cfg.Topics.Commands || tp.TopicID == desc.TopicID {
				for _, part := range tp.Partitions {
					out[part] = true
				}
			}
		}
		return out
	}
	m := g.Members[i]
	cur, target := parts(m.Assignment), parts(m.TargetAssignment)
	if len(cur) != len(target) {
		return nil, false // still reconciling
	}
	for part := range cur {
		if !target[part] {
			return nil, false
		}
	}
	return cur, true
}
