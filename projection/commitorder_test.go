package projection

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
)

// TestCommitNeverOvertakesAWrite: the accounts group commits an event only
// once its records are written (the writer defers the commit), and sarama
// commits the highest offset marked in a partition. An event that writes
// nothing (another aggregate's, a dead letter) right after one whose table
// write fails must not be committed before it either: that commit would
// cover the failed event, which would never come again, and the table (and
// every view) would miss its entry for good although the store holds it.
func TestCommitNeverOvertakesAWrite(t *testing.T) {
	opened := func(e *env) *kgo.Record {
		return rec("a1", e.encode("account", "a1", 1, "", account.AccountOpened{Owner: "alice", Currency: "EUR"}))
	}
	for _, tc := range []struct {
		name  string
		after func(e *env) []*kgo.Record // on a1's partition, behind its refused write
	}{
		{"another aggregate's event and a dead letter", func(e *env) []*kgo.Record {
			return []*kgo.Record{rec("a1", e.encode("folder", "a1", 1, "FolderCreated", nil)), rec("a1", []byte("not an event"))}
		}},
		// A record without a value (a tombstone someone wrote to the
		// events topic) writes nothing either. goka's default nil
		// handling (NilIgnore) committed it at once, without a callback,
		// past the pending write before it: the refused write was never
		// read again.
		{"a tombstone", func(e *env) []*kgo.Record { return []*kgo.Record{rec("a1", nil)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.config(t.TempDir(), 1)
			refuse, refused := refuseTableProduces(t, e, cfg)
			e.produce(append([]*kgo.Record{opened(e)}, tc.after(e)...)...)
			e.runUntilItFails(t, cfg, refused, "refused table produces")
			refuse.Store(false)
			p2 := e.startProjector(cfg)
			s := e.startServer(t.TempDir(), 1)
			eventually(t, "the view of the accounts table has a1", func() (bool, string) {
				var a Account
				code := getJSON(s.Handler(), "/v1/accounts/a1", &a)
				return code == 200 && a.Version == 1, fmt.Sprintf("%d %+v; stats %+v", code, a, p2.Stats())
			})
		})
	}
}
