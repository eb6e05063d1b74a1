package history

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// At selects a point of an aggregate's history: a version, a time, or
// (both zero) its latest version.
type At struct {
	// Version: the state after the event with this version (> 0).
	Version int64
	// Time: the state after the last event accepted at or before it.
	Time time.Time
}

// ErrNoSuchVersion: the aggregate has no event with the version asked for
// (it is at a lower one, or never existed).
var ErrNoSuchVersion = errors.New("history: no such version")

// State is an aggregate's state as of a point of its history.
type State struct {
	AggregateType string
	AggregateID   string
	// Version is the version of the last event folded (0: none).
	Version int64
	// State is the aggregate's Go state value, folded with its own
	// Evolve (ApplyEvent) from its initial state.
	State any
	// TimestampMillis is the accept time of the last event folded.
	TimestampMillis int64
}

// StateAt folds the aggregate's events 1..N with its own Evolve, where N is
// at.Version, or the last version accepted at or before at.Time, or the
// latest. Versions must run 1, 2, 3, ... without a gap or a duplicate
// (Registry.ReplayState checks it): a history that does not is an error,
// never a silently different state.
func (r *Reader) StateAt(ctx context.Context, aggType, id string, at At) (State, error) {
	if at.Version < 0 {
		return State{}, fmt.Errorf("history: at version %d: %w", at.Version, ErrNoSuchVersion)
	}
	evs, err := r.History(ctx, aggType, id, 1, at.Version)
	if err != nil {
		return State{}, err
	}
	if !at.Time.IsZero() {
		cut := at.Time.UnixMilli()
		n := 0
		for n < len(evs) && evs[n].TimestampMillis <= cut {
			n++
		}
		evs = evs[:n]
	}
	if at.Version > 0 && (len(evs) == 0 || evs[len(evs)-1].Version < at.Version) {
		latest := int64(0)
		if len(evs) > 0 {
			latest = evs[len(evs)-1].Version
		}
		return State{}, fmt.Errorf("history: %s %q is at version %d, not %d: %w", aggType, id, latest, at.Version, ErrNoSuchVersion)
	}
	values := make([][]byte, len(evs))
	for i := range evs {
		values[i] = evs[i].Value
	}
	state, version, err := r.cfg.Open.ReplayState(aggType, id, values)
	if err != nil {
		return State{}, fmt.Errorf("history: %w", err)
	}
	s := State{AggregateType: aggType, AggregateID: id, Version: version, State: state}
	if len(evs) > 0 {
		s.TimestampMillis = evs[len(evs)-1].TimestampMillis
	}
	return s, nil
}

// EventValues returns the values of the aggregate's events 1..upTo of
// partition part, in order: the topology.HistorySource the processor's
// schema-change rebuild reads instead of scanning the partition.
func (r *Reader) EventValues(ctx context.Context, aggType, id string, part int32, upTo int64) ([][]byte, error) {
	p, err := r.partitionOf(ctx, id)
	if err != nil {
		return nil, err
	}
	if p != part {
		return nil, fmt.Errorf("history: %s %q is on partition %d, not %d", aggType, id, p, part)
	}
	evs, err := r.History(ctx, aggType, id, 1, upTo)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(evs))
	for i := range evs {
		out[i] = evs[i].Value
	}
	return out, nil
}
