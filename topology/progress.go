package topology

import (
	"slices"
	"time"
)

// Role says why a worker holds a partition's store.
type Role string

const (
	// RoleActive: the worker owns the partition (it processes its
	// commands once the store is caught up).
	RoleActive Role = "active"
	// RoleStandby: the worker tails the partition's changelog to take it
	// over quickly (Config.Standbys).
	RoleStandby Role = "standby"
)

// PartitionState is the restore progress of one partition's store on this
// worker.
type PartitionState struct {
	Partition int32
	Role      Role
	// Restored and Total count changelog offsets of the current (or last)
	// catch-up: Total is how many it had to read, Restored how many it has
	// read so far. Both are zero when the store needed nothing.
	Restored, Total int64
	// Lag is how many changelog offsets the store was behind the
	// changelog's last stable offset at the last check: during a restore,
	// what is left to read; for a standby, how far it fell behind between
	// two catch-ups (the most a takeover would have to read); 0 for an
	// active partition in use (its store is written right after each
	// commit).
	Lag int64
	// Checkpoint is the next changelog offset the store had not read at
	// the last catch-up (restores and standby tailing; an active store
	// moves on with every commit without updating it).
	Checkpoint int64
	// Ready: the store is caught up. An active partition is processed only
	// when ready.
	Ready bool
}

// Ready reports whether the worker is running, has joined its group, and
// every partition it owns has a caught-up store. A worker restoring a
// partition is not ready, nor one holding a partition back because of data
// it cannot read (Unreadable).
func (p *Processor) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running || !p.joined {
		return false
	}
	for part := range p.assigned {
		ps := p.progress[part]
		if ps == nil || !ps.Ready || p.unreadable[part] != nil {
			return false
		}
	}
	return true
}

// PartitionStates returns the state of every partition store this worker
// holds for its owned partitions and its standbys, by partition.
func (p *Processor) PartitionStates() []PartitionState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PartitionState, 0, len(p.progress))
	for _, ps := range p.progress {
		st := *ps
		if st.Role == RoleActive && p.unreadable[st.Partition] != nil {
			st.Ready = false // held back by data it cannot read (unreadable.go)
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b PartitionState) int { return int(a.Partition - b.Partition) })
	return out
}

// progressTracker updates a partition's PartitionState during a catch-up
// and logs its progress (at most every progressLogEvery, plus start and end
// of any catch-up that has something to read).
type progressTracker struct {
	p        *Processor
	part     int32
	from     int64
	total    int64
	start    time.Time
	lastLog  time.Time
	standby  bool
	restored int64
}

const progressLogEvery = 2 * time.Second

func (p *Processor) startProgress(part int32, from, target int64) *progressTracker {
	t := &progressTracker{p: p, part: part, from: from, total: target - from, start: time.Now()}
	t.lastLog = t.start
	p.mu.Lock()
	ps := p.progress[part]
	if ps != nil {
		ps.Restored, ps.Total, ps.Lag = 0, t.total, t.total
		t.standby = ps.Role == RoleStandby
		if !t.standby {
			ps.Ready = t.total <= 0
		}
	}
	p.mu.Unlock()
	if !t.standby && t.total > 0 {
		p.log.Info("restoring store", "partition", part, "from", from, "to", target, "offsets", t.total)
	}
	return t
}

func (t *progressTracker) update(next int64, records int) {
	t.restored = next - t.from
	t.p.mu.Lock()
	if ps := t.p.progress[t.part]; ps != nil {
		ps.Restored, ps.Lag = t.restored, t.total-t.restored
	}
	t.p.mu.Unlock()
	if now := time.Now(); !t.standby && now.Sub(t.lastLog) >= progressLogEvery {
		t.lastLog = now
		t.p.log.Info("restore progress", "partition", t.part, "restored", t.restored, "total", t.total, "records", records)
	}
}

func (t *progressTracker) done(records int) {
	if !t.standby && t.total > 0 {
		t.p.log.Info("restore done", "partition", t.part, "restored", t.restored, "total", t.total, "records", records, "took", time.Since(t.start))
	}
}

// markCaughtUp records that the tailer caught a partition's store up to the
// changelog's last stable offset as of the check (lag is what it read).
func (p *Processor) markCaughtUp(part int32, role Role, lag, checkpoint int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.progress[part]
	if ps == nil {
		if role == RoleActive {
			return // revoked meanwhile
		}
		ps = &PartitionState{Partition: part, Role: role}
		p.progress[part] = ps
	}
	if ps.Role != role {
		return
	}
	ps.Ready, ps.Lag, ps.Checkpoint = true, 0, checkpoint
	if role == RoleStandby {
		ps.Lag = lag
	}
}

// markActive records that the run loop caught an owned partition's store up
// and processes it from now on.
func (p *Processor) markActive(part int32, gen uint64, checkpoint int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if gen == 0 || p.assigned[part] != gen {
		return
	}
	ps := p.progress[part]
	if ps == nil {
		ps = &PartitionState{Partition: part}
		p.progress[part] = ps
	}
	ps.Role, ps.Ready, ps.Lag, ps.Checkpoint = RoleActive, true, 0, checkpoint
}

// dropStandby forgets the state of a standby partition the tailer let go.
func (p *Processor) dropStandby(part int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps := p.progress[part]; ps != nil && ps.Role == RoleStandby {
		delete(p.progress, part)
	}
}
