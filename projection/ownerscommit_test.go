package projection

import (
	"fmt"
	"testing"

	"github.com/kcqrs/kcqrs/shred"
)

// TestOwnersCommitNeverOvertakesAWrite: the owners group, on goka's own
// path, commits each record once its own emits are done, and sarama commits
// the highest offset marked in a partition. An entry of an erased account
// that the group never held emits nothing and was committed at once, while
// the table emit of the entry before it was still waiting in goka's
// producer: the broker refuses that emit, the group fails, but the commit
// covers the failed entry, which never comes again. The owners table (and
// every view of it) misses it for good.
func TestOwnersCommitNeverOvertakesAWrite(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t.TempDir(), 1)
	owners := testOwnerIndex(t)
	keys := shred.NewKeyring()
	cfg.Personal = &Personal{Keys: keys, Owners: owners}
	// Two entries on one partition of the owner index: o1's, then one of
	// an erased account.
	k1 := OwnerKey("alice", "o1")
	var k2, erased string
	for i := 0; ; i++ {
		erased = fmt.Sprintf("e%d", i)
		if k2 = OwnerKey("bob", erased); partitionOf(k2) == partitionOf(k1) {
			break
		}
	}
	keys.Delete(accountSubject(erased))
	n := cfg.Names.withDefaults()
	refuse, refused := refuseProduces(t, e, cfg, TableOf(n.OwnersGroup()))
	topic := string(n.ByOwnerTopic())
	r1, r2 := rec(k1, []byte(`{"id":"o1","owner":"alice","version":1}`)), rec(k2, []byte(`{"id":"`+erased+`","owner":"bob","version":1}`))
	r1.Topic, r2.Topic = topic, topic
	e.produce(r1, r2)
	e.runUntilItFails(t, cfg, refused, "refused table produces")
	refuse.Store(false)
	e.startProjector(cfg)
	tab := readAll(t, e.brokers, TableOf(n.OwnersGroup()), 1)
	if string(tab[0].Key) != k1 {
		t.Fatalf("owners table record %q", tab[0].Key)
	}
}
