package topology

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// CommandStages is when one command passed each stage of the processor.
// Produced is the command record's timestamp (set by its producer: a clock
// other than the processor's when they run on different machines); the
// others are the processor's clock.
type CommandStages struct {
	Partition int32
	Offset    int64
	// Produced: the command record's timestamp.
	Produced time.Time
	// Fetched: the poll that returned the record returned to the run loop.
	Fetched time.Time
	// Decided: the command was handled (decided, its events and reply
	// produced into the open transaction).
	Decided time.Time
	// Committed: the transaction that holds its reply committed; a
	// read_committed consumer may read the reply from now on.
	Committed time.Time
}

// StageObserver is an optional extension of Observer: an Observer that
// implements it is told, after each committed transaction, the stages of
// every command in it (for a per-stage latency breakdown: ops.Metrics'
// kcqrs_command_stage_seconds, the bench's latency table). The slice is
// only valid during the call. Commands of transactions that did not commit
// are not reported: they are consumed again.
type StageObserver interface {
	CommandStages(stages []CommandStages)
}

// stageClock keeps the stage times of a batch's commands when the observer
// wants them; nil (and free) otherwise.
type stageClock struct {
	o      StageObserver
	stages []CommandStages
}

func (p *Processor) newStageClock() *stageClock {
	o, ok := p.cfg.Observer.(StageObserver)
	if !ok {
		return nil
	}
	return &stageClock{o: o}
}

// decided notes that r, polled at fetched, has been handled.
func (s *stageClock) decided(r *kgo.Record, fetched time.Time) {
	if s == nil {
		return
	}
	s.stages = append(s.stages, CommandStages{Partition: r.Partition, Offset: r.Offset, Produced: r.Timestamp, Fetched: fetched, Decided: time.Now()})
}

// committed reports the batch's stages, committed at.
func (s *stageClock) committed(at time.Time) {
	if s == nil || len(s.stages) == 0 {
		return
	}
	for i := range s.stages {
		s.stages[i].Committed = at
	}
	s.o.CommandStages(s.stages)
}
