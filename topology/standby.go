package topology

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/snapshots"
)

// tailer keeps stores this worker holds but does not process from caught up
// with the changelog: the partitions it owns but has not received a command
// for yet (eager restore, so that readiness means "caught up" and the first
// command needs only the last few records) and, with Config.Standbys, the
// partitions it is a warm standby for. It hands a store to the run loop
// when the run loop needs it (take) and gets it back on revocation (give).
type tailer struct {
	p      *Processor
	wakeCh chan struct{}

	mu      sync.Mutex
	stopped bool
	entries map[int32]*tailEntry
}

type tailEntry struct {
	mu    sync.Mutex // held during a catch-up; take waits for it
	part  int32
	store *snapshots.Store
	taken bool
	// warmGen is the assignment generation in which the store of an owned
	// partition was caught up. Only its previous owner's last transaction
	// can add to the changelog before the run loop takes the store (and
	// the run loop catches that up itself), so once is enough.
	warmGen uint64
}

func newTailer(p *Processor) *tailer {
	return &tailer{p: p, wakeCh: make(chan struct{}, 1), entries: map[int32]*tailEntry{}}
}

func (t *tailer) wake() {
	select {
	case t.wakeCh <- struct{}{}:
	default:
	}
}

func (t *tailer) run(ctx context.Context) {
	tick := time.NewTicker(t.p.cfg.StandbyInterval)
	defer tick.Stop()
	defer t.stop()
	for {
		t.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-t.wakeCh:
		}
	}
}

// stop closes every store the tailer holds; later gives close at once.
func (t *tailer) stop() {
	t.mu.Lock()
	t.stopped = true
	entries := t.entries
	t.entries = map[int32]*tailEntry{}
	t.mu.Unlock()
	for _, e := range entries {
		e.mu.Lock()
		t.close(e)
		e.mu.Unlock()
	}
}

func (t *tailer) close(e *tailEntry) {
	if err := e.store.Close(); err != nil {
		t.p.log.Warn("closing store", "partition", e.part, "err", err)
	}
	t.p.dropStandby(e.part)
}

// take returns the tailer's store of part for the run loop, waiting for a
// running catch-up of it to finish, or nil if the tailer does not hold it.
func (t *tailer) take(part int32) *snapshots.Store {
	t.mu.Lock()
	e := t.entries[part]
	delete(t.entries, part)
	t.mu.Unlock()
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.taken = true
	return e.store
}

// give takes over the store of a partition the run loop let go.
func (t *tailer) give(part int32, store *snapshots.Store) {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		t.close(&tailEntry{part: part, store: store})
		return
	}
	t.entries[part] = &tailEntry{part: part, store: store}
	t.mu.Unlock()
	t.wake()
}

func (t *tailer) tick(ctx context.Context) {
	p := t.p
	want := map[int32]Role{}
	p.mu.Lock()
	for part := range p.assigned {
		if !p.active[part] {
			want[part] = RoleActive
		}
	}
	p.mu.Unlock()
	if p.cfg.Standbys > 0 {
		for _, part := range p.standbyPartitions(ctx) {
			if _, ok := want[part]; !ok {
				want[part] = RoleStandby
			}
		}
	}

	// Open what is wanted, close what is not. The run loop marks a
	// partition active before it takes it, so checking active under t.mu
	// keeps the tailer from opening a store the run loop opens.
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	var drop []*tailEntry
	for part, e := range t.entries {
		if _, ok := want[part]; !ok {
			drop = append(drop, e)
			delete(t.entries, part)
		}
	}
	for part, role := range want {
		if t.entries[part] != nil {
			continue
		}
		p.mu.Lock()
		active, assigned := p.active[part], p.assigned[part] != 0
		p.mu.Unlock()
		if active || (role == RoleStandby && assigned) {
			continue
		}
		store, err := p.openStore(part)
		if err != nil {
			p.log.Warn("tailer: opening store", "partition", part, "err", err)
			continue
		}
		t.entries[part] = &tailEntry{part: part, store: store}
	}
	entries := make([]*tailEntry, 0, len(t.entries))
	for _, e := range t.entries {
		entries = append(entries, e)
	}
	t.mu.Unlock()
	for _, e := range drop {
		e.mu.Lock()
		t.close(e)
		e.mu.Unlock()
	}

	// Owned partitions first: readiness waits for them.
	slices.SortFunc(entries, func(a, b *tailEntry) int {
		ra, rb := want[a.part] == RoleActive, want[b.part] == RoleActive
		if ra != rb {
			if ra {
				return -1
			}
			return 1
		}
		return int(a.part - b.part)
	})
	// Catch-ups run side by side (at most tailerParallel): one slow
	// partition must not hold the others back.
	sem := make(chan struct{}, tailerParallel)
	var wg sync.WaitGroup
	for _, e := range entries {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(e *tailEntry) {
			defer func() { <-sem; wg.Done() }()
			t.catchUp(ctx, e, want[e.part])
		}(e)
	}
	wg.Wait()
}

// tailerParallel bounds the tailer's concurrent catch-ups.
const tailerParallel = 4

func (t *tailer) catchUp(ctx context.Context, e *tailEntry, role Role) {
	p := t.p
	e.mu.Lock()
	if e.taken {
		e.mu.Unlock()
		return
	}
	var gen uint64
	if role == RoleActive {
		p.mu.Lock()
		gen = p.assigned[e.part]
		p.mu.Unlock()
		if gen == 0 || e.warmGen == gen {
			e.mu.Unlock()
			return
		}
	}
	if role == RoleStandby {
		e.warmGen = 0
		p.mu.Lock()
		if p.progress[e.part] == nil {
			p.progress[e.part] = &PartitionState{Partition: e.part, Role: RoleStandby}
		}
		p.mu.Unlock()
	}
	rep, err := p.restore(ctx, e.part, e.store, role == RoleActive)
	if err == nil && role == RoleActive {
		e.warmGen = gen
	}
	e.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("tailer: catching up store", "partition", e.part, "role", role, "err", err)
		}
		return
	}
	p.markCaughtUp(e.part, role, rep.To-rep.From, rep.To)
	if role == RoleActive && rep.To > rep.From {
		p.log.Info("owned store caught up ahead of its first command", "partition", e.part, "from", rep.From, "to", rep.To, "records", rep.Records, "took", rep.Duration)
	}
}

// standbyPartitions returns the partitions this worker is a standby for.
// Every worker derives them alike from the group's description: the members
// sorted by client id (which carries the instance id, so the order survives
// restarts), the standbys of a partition are the Standbys members after its
// owner in that order.
func (p *Processor) standbyPartitions(ctx context.Context) []int32 {
	memberID, _ := p.sess.Client().GroupMetadata()
	if memberID == "" {
		return nil
	}
	members, err := p.groupMembers(ctx)
	if err != nil {
		p.log.Debug("standby placement: describe group", "err", err)
		return nil
	}
	slices.SortFunc(members, func(a, b groupMember) int {
		if c := strings.Compare(a.clientID, b.clientID); c != 0 {
			return c
		}
		return strings.Compare(a.memberID, b.memberID)
	})
	me := slices.IndexFunc(members, func(m groupMember) bool { return m.memberID == memberID })
	if me < 0 {
		return nil
	}
	n := len(members)
	var out []int32
	for i, m := range members {
		if i == me {
			continue
		}
		// Am I among the Standbys members after i?
		dist := (me - i + n) % n
		if dist < 1 || dist > p.cfg.Standbys {
			continue
		}
		out = append(out, m.commands...)
	}
	return out
}

// ready reports, without waiting, whether the tailer holds part's store
// caught up in assignment generation gen (so that take returns at once).
func (t *tailer) ready(part int32, gen uint64) bool {
	t.mu.Lock()
	e := t.entries[part]
	t.mu.Unlock()
	if e == nil {
		return false
	}
	if !e.mu.TryLock() {
		return false // a catch-up is running
	}
	defer e.mu.Unlock()
	return !e.taken && e.warmGen == gen
}

// groupMember is one member of the workers' group as standby placement
// sees it: its ids and the command partitions assigned to it.
type groupMember struct {
	clientID, memberID string
	commands           []int32
}

// groupMembers describes the workers' group: with DescribeGroups for a
// classic group, with ConsumerGroupDescribe for a KIP-848 one (which
// DescribeGroups does not describe).
func (p *Processor) groupMembers(ctx context.Context) ([]groupMember, error) {
	var out []groupMember
	if p.cfg.GroupProtocol == GroupProtocolConsumer {
		return p.consumerGroupMembers(ctx)
	}
	groups, err := p.adm.DescribeGroups(ctx, p.cfg.Group)
	if err != nil {
		return nil, err
	}
	g, ok := groups[p.cfg.Group]
	if !ok || g.Err != nil {
		return nil, fmt.Errorf("describe group %s: %w", p.cfg.Group, g.Err)
	}
	for _, m := range g.Members {
		gm := groupMember{clientID: m.ClientID, memberID: m.MemberID}
		if ca, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range ca.Topics {
				if tp.Topic == p.cfg.Topics.Commands {
					gm.commands = append(gm.commands, tp.Partitions...)
				}
			}
		}
		out = append(out, gm)
	}
	return out, nil
}

// consumerGroupMembers describes a KIP-848 group with ConsumerGroupDescribe.
// Its assignments may name topics by id only (kadm keeps only names), so
// the request is made here and the commands topic matched by name or id.
func (p *Processor) consumerGroupMembers(ctx context.Context) ([]groupMember, error) {
	topics, err := p.adm.ListTopics(ctx, p.cfg.Topics.Commands)
	if err != nil {
		return nil, err
	}
	commandsID := topics[p.cfg.Topics.Commands].ID
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Groups = []string{p.cfg.Group}
	resp, err := req.RequestWith(ctx, p.admCl)
	if err != nil {
		return nil, err
	}
	var out []groupMember
	for _, g := range resp.Groups {
		if err := kerr.ErrorForCode(g.ErrorCode); err != nil {
			return nil, fmt.Errorf("describe consumer group %s: %w", g.Group, err)
		}
		for _, m := range g.Members {
			gm := groupMember{clientID: m.ClientID, memberID: m.MemberID}
			for _, tp := range m.Assignment.TopicPartitions {
				if tp.Topic == p.cfg.Topics.Commands || (tp.Topic == "" && tp.TopicID == commandsID) {
					gm.commands = append(gm.commands, tp.Partitions...)
				}
			}
			out = append(out, gm)
		}
	}
	return out, nil
}
