package topology

import (
	"time"

	"github.com/kcqrs/kcqrs/wire"
)

// Observer is told what a processor does, for metrics. Its methods are
// called on the processor's run loop (RestoreProgress on the restoring
// goroutine) and must return quickly and never block; they must be safe
// for concurrent use. Observations made inside a transaction (Replied,
// DeadLettered) belong to it: an implementation that counts only committed
// work keeps them until TransactionEnded says whether it committed.
type Observer interface {
	// Replied: a command at partition/offset was answered with status in
	// the open transaction. recordTime is the command record's timestamp.
	Replied(partition int32, offset int64, status wire.Status, duplicate bool, recordTime time.Time)
	// DeadLettered: a command was copied to the dead-letter topic in the
	// open transaction.
	DeadLettered(partition int32)
	// TransactionEnded: a transaction of records command records ended;
	// took is the time End took (the commit or the abort).
	TransactionEnded(records int, committed bool, took time.Duration)
	// Fetched: records of partition up to nextOffset-1 were polled while
	// the partition's last stable offset was lastStable (lag = lastStable -
	// nextOffset).
	Fetched(partition int32, nextOffset, lastStable int64)
	// RestoreProgress: restoring partition's store, next is the changelog
	// offset to read next and target the offset restore reads up to.
	RestoreProgress(partition int32, next, target int64)
}

// NopObserver observes nothing; the default.
type NopObserver struct{}

func (NopObserver) Replied(int32, int64, wire.Status, bool, time.Time) {}
func (NopObserver) DeadLettered(int32)                                 {}
func (NopObserver) TransactionEnded(int, bool, time.Duration)          {}
func (NopObserver) Fetched(int32, int64, int64)                        {}
func (NopObserver) RestoreProgress(int32, int64, int64)                {}

// Defaults returns the config with every default applied, for programs that
// show them (help texts, docs) before they know the required fields.
func Defaults() Config {
	var c Config
	c.setDefaults()
	c.Logger = nil
	c.Now = nil
	return c
}
