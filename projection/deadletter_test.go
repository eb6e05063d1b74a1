package projection

import (
	"testing"

	"github.com/kcqrs/kcqrs/aggregates/account"
)

// TestCommitNeverOvertakesADeadLetter: the accounts group's dead letters
// are records the event's commit depends on, like its table entry. goka
// emitted them through its own producer (flushed every 100 ms) while the
// writer released the commits of the events behind it as soon as their
// batch was written (every 5 ms): the broker refuses the dead letter, the
// group fails, but sarama commits the highest offset marked, which covered
// the dead-lettered event. It never came again: its dead letter was lost.
func TestCommitNeverOvertakesADeadLetter(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t.TempDir(), 1)
	dlq := string(DeadLetters(cfg.Names.withDefaults().AccountsGroup()))
	refuse, refused := refuseProduces(t, e, cfg, dlq)
	e.produce(rec("a1", []byte("not an event")), // dead-lettered
		rec("a1", e.encode("account", "a1", 1, "", account.AccountOpened{Owner: "alice", Currency: "EUR"}))) // same partition, written
	e.runUntilItFails(t, cfg, refused, "refused dead letter")
	refuse.Store(false)
	e.startProjector(cfg)
	dl := readAll(t, e.brokers, dlq, 1)
	if string(dl[0].Key) != "a1" || string(dl[0].Value) != "not an event" {
		t.Fatalf("dead letter %q: %q", dl[0].Key, dl[0].Value)
	}
}
