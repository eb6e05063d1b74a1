package projection

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/aggregates/account"
)

// TestLostTableEmitRepaired: goka writes its local store before the table
// emit. The broker refuses every produce to the accounts table, so the emits
// fail after the store took the update and the group stops. On restart the
// events come again and are stale against the store: they must re-emit the
// table record, or the views (and any member that takes the partition over)
// keep the old value for good.
func TestLostTableEmitRepaired(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t.TempDir(), 1)
	refuse, refused := refuseTableProduces(t, e, cfg)
	e.produce(rec("a1", e.encode("account", "a1", 1, "", account.AccountOpened{Owner: "alice", Currency: "EUR"})),
		rec("a1", e.encode("account", "a1", 2, "", account.MoneyDeposited{Amount: 9, Balance: 9})))
	started := time.Now()
	e.runUntilItFails(t, cfg, refused, "refused table emits")
	refuse.Store(false)
	// Restart on the same store: it already holds a1 at version 2.
	p2 := e.startProjector(cfg)
	s := e.startServer(t.TempDir(), 1)
	t.Logf("restarted after %v", time.Since(started))
	eventually(t, "the view of the accounts table has a1 at version 2", func() (bool, string) {
		var a Account
		code := getJSON(s.Handler(), "/v1/accounts/a1", &a)
		return code == 200 && a.Version == 2 && a.Balance == 9, fmt.Sprintf("%d %+v; stats %+v", code, a, p2.Stats())
	})
	t.Logf("view repaired after %v", time.Since(started))
	eventually(t, "owner and total", func() (bool, string) {
		var tot TotalResponse
		var o OwnerResponse
		c1, c2 := getJSON(s.Handler(), "/v1/totals/EUR", &tot), getJSON(s.Handler(), "/v1/owners/alice/accounts", &o)
		return c1 == 200 && tot.Total == 9 && c2 == 200 && len(o.Accounts) == 1 && o.Accounts[0].Version == 2,
			fmt.Sprintf("%d %+v %d %+v", c1, tot, c2, o)
	})
}

// refuseTableProduces makes the broker refuse every produce to the version's
// accounts table while refuse is set (it starts set), counting them.
func refuseTableProduces(t *testing.T, e *env, cfg Config) (refuse *atomic.Bool, refused *atomic.Int64) {
	t.Helper()
	return refuseProduces(t, e, cfg, TableOf(cfg.Names.withDefaults().AccountsGroup()))
}

// refuseProduces makes the broker refuse every produce to topic (one of the
// version's topics) while refuse is set (it starts set), counting them.
func refuseProduces(t *testing.T, e *env, cfg Config, table string) (refuse *atomic.Bool, refused *atomic.Int64) {
	t.Helper()
	// The table's produces are told by name (sarama) or by topic id (the
	// accounts group's franz-go writer, Produce v13+).
	if _, err := EnsureTopics(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	td, err := e.adm.ListTopics(context.Background(), table)
	if err != nil || td[table].Err != nil {
		t.Fatalf("topic %s: %v %v", table, err, td[table].Err)
	}
	tableID := td[table].ID
	refuse = new(atomic.Bool)
	refuse.Store(true)
	refused = new(atomic.Int64)
	e.cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		hit := false
		for _, tp := range pr.Topics {
			hit = hit || tp.Topic == table || tp.TopicID == tableID
		}
		if !refuse.Load() || !hit {
			return nil, nil, false
		}
		refused.Add(1)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, tp := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = tp.Topic, tp.TopicID
			for _, p := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = kerr.MessageTooLarge.Code // not retried by sarama
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	return refuse, refused
}
