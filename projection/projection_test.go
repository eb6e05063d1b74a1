package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/wire"
)

func (e *env) startServer(stateDir string, versions ...int) *Server {
	e.t.Helper()
	s, _ := e.startStoppableServer(stateDir, versions...)
	return s
}

func (e *env) startStoppableServer(stateDir string, versions ...int) (*Server, func()) {
	e.t.Helper()
	cfg := e.config(stateDir, versions[0])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := NewServer(ctx, ServerConfig{Projection: cfg, Versions: versions, CheckInterval: 100 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(rctx); close(done) }()
	stop := func() { rcancel(); <-done }
	e.t.Cleanup(stop)
	return s, stop
}

func TestReadModelsEqualFoldOfEventsTopic(t *testing.T) {
	e := newEnv(t)
	n, balances := e.workload(1, 40, 10, "acc-")
	p := e.startProjector(e.config(t.TempDir(), 1))
	s := e.startServer(t.TempDir(), 1)
	f := foldTopic(t, e.brokers, n)
	eventually(t, "read models equal the fold", func() (bool, string) { return f.matches(s.Handler()) })
	// The fold itself agrees with the amounts the workload wrote.
	for id, bal := range balances {
		if f.accounts[id].Balance != bal {
			t.Fatalf("fold of %s has balance %d, the workload left %d", id, f.accounts[id].Balance, bal)
		}
	}
	if st := p.Stats(); st.Gaps != 0 || st.DeadLetters != 0 || st.Applied != int64(n-1) {
		t.Fatalf("clean history reported problems: %+v", st)
	}
}

// TestRedeliveryGapAndDeadLetters: a redelivered event changes nothing, a gap
// is reported (counted and dead-lettered, the entry marks it), and events the
// projection cannot handle go to its dead-letter topic while later events of
// the same partition keep flowing.
func TestRedeliveryGapAndDeadLetters(t *testing.T) {
	e := newEnv(t)
	opened := e.encode("account", "a1", 1, "", account.AccountOpened{Owner: "alice", Currency: "EUR"})
	dep := e.encode("account", "a1", 2, "", account.MoneyDeposited{Amount: 50, Balance: 50})
	e.produce(rec("a1", opened), rec("a1", dep))
	p := e.startProjector(e.config(t.TempDir(), 1))
	s := e.startServer(t.TempDir(), 1)
	h := s.Handler()
	eventually(t, "a1 at version 2", func() (bool, string) {
		var a Account
		code := getJSON(h, "/v1/accounts/a1", &a)
		return code == 200 && a.Version == 2 && a.Balance == 50, fmt.Sprintf("%d %+v", code, a)
	})
	e.produce(
		rec("a1", dep), rec("a1", opened), // redeliveries
		rec("a1", e.encode("account", "a1", 5, "", account.MoneyDeposited{Amount: 5, Balance: 55})), // gap: 3 and 4 missing
		rec("a1", []byte("not an event")),                               // undecodable
		rec("a1", e.encode("account", "a1", 6, "TransferDebited", nil)), // unknown type
		rec("a1", e.encode("account", "a1", 7, "", account.MoneyWithdrawn{Amount: 15, Balance: 40})),
	)
	eventually(t, "a1 at version 7", func() (bool, string) {
		var a Account
		code := getJSON(h, "/v1/accounts/a1", &a)
		want := Account{ID: "a1", Owner: "alice", Currency: "EUR", Status: "open", Balance: 40, Version: 7, Gaps: 1, Skipped: 1}
		a.UpdatedMillis = 0
		return code == 200 && a == want, fmt.Sprintf("%d %+v", code, a)
	})
	st := p.Stats()
	// At least: goka may redeliver on its own (a rebalance), which only adds
	// stale events and repeats the dead letters of version-less records.
	if st.Stale < 2 || st.Gaps != 1 || st.DeadLetters < 3 {
		t.Fatalf("stats %+v: want 2 stale, 1 gap, 3 dead letters", st)
	}
	// The per-group counters put them on the accounts group.
	gs := p.GroupStats()
	accG, own, totG := gs[string(p.Names().AccountsGroup())], gs[string(p.Names().OwnersGroup())], gs[string(p.Names().TotalsGroup())]
	if accG.Stale < 2 || accG.Gaps != 1 || accG.DeadLetters != st.DeadLetters || accG.Applied < 4 || own.DeadLetters+totG.DeadLetters != 0 || own.Gaps+totG.Gaps != 0 {
		t.Fatalf("group stats %+v: want the stale events, the gap and every dead letter on the accounts group", gs)
	}
	// The dead letters carry their reasons.
	dl := readAll(t, e.brokers, string(DeadLetters(p.Names().AccountsGroup())), 3)
	var reasons []string
	for _, r := range dl {
		for _, hd := range r.Headers {
			if hd.Key == wire.HeaderDLQError {
				reasons = append(reasons, string(hd.Value))
			}
		}
	}
	if len(reasons) != 3 || !contains(reasons[0], "version gap") || !contains(reasons[1], "undecodable") || !contains(reasons[2], "TransferDebited") {
		t.Fatalf("dead-letter reasons %q", reasons)
	}
	// A redelivered update on the intermediate topic changes nothing either.
	eventually(t, "owner and total follow version 7", func() (bool, string) {
		var tot TotalResponse
		var o OwnerResponse
		c1, c2 := getJSON(h, "/v1/totals/EUR", &tot), getJSON(h, "/v1/owners/alice/accounts", &o)
		return c1 == 200 && tot.Total == 40 && c2 == 200 && len(o.Accounts) == 1 && o.Accounts[0].Version == 7,
			fmt.Sprintf("%+v %+v", tot, o)
	})
	before := p.Stats().StaleMerges
	old, _ := json.Marshal(Account{ID: "a1", Owner: "alice", Currency: "EUR", Status: "open", Balance: 50, Version: 2})
	oldTotal, _ := json.Marshal(CurrencyTotal{Currency: "EUR", Partition: partitionOf("a1"), Total: 50, Accounts: 1, Open: 1, Seq: 1})
	e.produce(&kgo.Record{Topic: string(p.Names().ByOwnerTopic()), Key: []byte(OwnerKey("alice", "a1")), Value: old},
		&kgo.Record{Topic: string(p.Names().ByCurrencyTopic()), Key: []byte(TotalKey("EUR", partitionOf("a1"))), Value: oldTotal})
	eventually(t, "stale merges counted", func() (bool, string) {
		return p.Stats().StaleMerges >= before+2, fmt.Sprintf("%+v", p.Stats())
	})
	var tot TotalResponse
	if code := getJSON(h, "/v1/totals/EUR", &tot); code != 200 || tot.Total != 40 {
		t.Fatalf("EUR total after redelivery: %d %+v, want 40", code, tot)
	}
	var o OwnerResponse
	if code := getJSON(h, "/v1/owners/alice/accounts", &o); code != 200 || len(o.Accounts) != 1 || o.Accounts[0].Version != 7 {
		t.Fatalf("owner after redelivery: %d %+v", code, o)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func readAll(t *testing.T, brokers []string, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(out), want, topic)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func TestReadYourWrites(t *testing.T) {
	e := newEnv(t)
	e.produce(rec("a1", e.encode("account", "a1", 1, "", account.AccountOpened{Owner: "alice", Currency: "EUR"})))
	e.startProjector(e.config(t.TempDir(), 1))
	s := e.startServer(t.TempDir(), 1)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(path string) (int, map[string]any) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if code, m := get("/v1/accounts/a1?min_version=1&wait=30s"); code != 200 || m["version"] != 1.0 {
		t.Fatalf("min_version=1: %d %v", code, m)
	}
	// Not reached: a clean timeout with the current version.
	if code, m := get("/v1/accounts/a1?min_version=3&wait=200ms"); code != http.StatusRequestTimeout || m["version"] != 1.0 || m["minVersion"] != 3.0 {
		t.Fatalf("min_version=3 before the events: %d %v", code, m)
	}
	if code, m := get("/v1/accounts/nobody?min_version=1&wait=50ms"); code != http.StatusRequestTimeout || m["version"] != 0.0 {
		t.Fatalf("unknown account with min_version: %d %v", code, m)
	}
	if code, _ := get("/v1/accounts/nobody"); code != 404 {
		t.Fatalf("unknown account: %d", code)
	}
	if code, _ := get("/v1/accounts/a1?wait=forever"); code != 400 {
		t.Fatalf("bad wait: %d", code)
	}
	// A waiting query returns as soon as the write arrives.
	type result struct {
		code int
		m    map[string]any
	}
	res := make(chan result, 1)
	go func() {
		code, m := get("/v1/accounts/a1?min_version=3&wait=30s")
		res <- result{code, m}
	}()
	time.Sleep(100 * time.Millisecond) // let it start waiting; the test holds either way
	e.produce(rec("a1", e.encode("account", "a1", 2, "", account.MoneyDeposited{Amount: 7, Balance: 7})),
		rec("a1", e.encode("account", "a1", 3, "", account.MoneyDeposited{Amount: 3, Balance: 10})))
	r := <-res
	if r.code != 200 || r.m["version"] != 3.0 || r.m["balance"] != 10.0 {
		t.Fatalf("waiting query: %d %v", r.code, r.m)
	}
	if resp, err := http.Post(srv.URL+"/v1/accounts/a1", "application/json", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST must be refused (read-only API): %v %v", resp.StatusCode, err)
	}
}

// TestSideBySideRebuild: version 2 is built beside version 1; queries keep
// being answered by version 1 until 2 has caught up, then switch.
func TestSideBySideRebuild(t *testing.T) {
	e := newEnv(t)
	n, _ := e.workload(2, 30, 8, "acc-")
	e.startProjector(e.config(t.TempDir(), 1))
	s := e.startServer(t.TempDir(), 1, 2)
	f := foldTopic(t, e.brokers, n)
	eventually(t, "version 1 answers", func() (bool, string) { return f.matches(s.Handler()) })
	if v := s.Active().Names.Version; v != 1 {
		t.Fatalf("active version %d before version 2 ran", v)
	}
	// Version 2 starts from scratch; every query meanwhile is answered, and
	// correctly, by one version or the other.
	e.startProjector(e.config(t.TempDir(), 2))
	seen := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for s.Active().Names.Version != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no switch-over in 60s: %+v", s.Status())
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/accounts/acc-003", nil))
		var a Account
		_ = json.Unmarshal(rec.Body.Bytes(), &a)
		if rec.Code != 200 || a != f.accounts["acc-003"] {
			t.Fatalf("during the rebuild: %d %s", rec.Code, rec.Body)
		}
		seen[rec.Header().Get("X-Read-Model-Version")] = true
		time.Sleep(20 * time.Millisecond)
	}
	if !seen["1"] {
		t.Fatal("version 1 never answered during the rebuild")
	}
	if ok, msg := f.matches(s.Handler()); !ok {
		t.Fatalf("after the switch to version 2: %s", msg)
	}
	if st := s.Status(); st.Active != 2 || !st.Versions[1].CaughtUp {
		t.Fatalf("status %+v", st)
	}
}

// TestLostEmitsRepaired: goka wrote the table update but its emits to the
// intermediate topics were lost in a crash (they are separate produces). The
// redelivered, now stale, events re-emit the held entry, so the owner and
// currency models still get it.
func TestLostEmitsRepaired(t *testing.T) {
	e := newEnv(t)
	e.produce(rec("a1", e.encode("account", "a1", 1, "", account.AccountOpened{Owner: "alice", Currency: "EUR"})),
		rec("a1", e.encode("account", "a1", 2, "", account.MoneyDeposited{Amount: 9, Balance: 9})))
	cfg := e.config(t.TempDir(), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := EnsureTopics(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	// The table already holds version 2 (as after the crash); no offsets
	// were committed and nothing reached the intermediate topics.
	held, _ := json.Marshal(Account{ID: "a1", Owner: "alice", Currency: "EUR", Status: "open", Balance: 9, Version: 2})
	e.produce(&kgo.Record{Topic: TableOf(cfg.Names.withDefaults().AccountsGroup()), Key: []byte("a1"), Value: held})
	p := e.startProjector(cfg)
	s := e.startServer(t.TempDir(), 1)
	eventually(t, "owner and total repaired", func() (bool, string) {
		var tot TotalResponse
		var o OwnerResponse
		c1, c2 := getJSON(s.Handler(), "/v1/totals/EUR", &tot), getJSON(s.Handler(), "/v1/owners/alice/accounts", &o)
		return c1 == 200 && tot.Total == 9 && c2 == 200 && len(o.Accounts) == 1, fmt.Sprintf("%d %+v %d %+v", c1, tot, c2, o)
	})
	if st := p.Stats(); st.Applied != 0 || st.Stale != 2 {
		t.Fatalf("stats %+v: both events were already in the table", st)
	}
}

// TestStatusCaughtUpFollowsTheData: /v1/status says caught up only when the
// groups and the views have everything (the definition /metrics shares), not
// merely because the version is the one queries go to.
func TestStatusCaughtUpFollowsTheData(t *testing.T) {
	e := newEnv(t)
	n, _ := e.workload(8, 6, 2, "acc-")
	s := e.startServer(t.TempDir(), 1)
	eventually(t, "a catch-up check ran", func() (bool, string) {
		st := s.Status()
		return st.Versions[0].Recovered && st.Versions[0].Total > 0, fmt.Sprintf("%+v", st)
	})
	if st := s.Status(); st.Versions[0].CaughtUp {
		t.Fatalf("caught up before any projector ran: %+v", st)
	}
	e.startProjector(e.config(t.TempDir(), 1))
	f := foldTopic(t, e.brokers, n)
	eventually(t, "caught up once built", func() (bool, string) {
		st := s.Status()
		return st.Versions[0].CaughtUp, fmt.Sprintf("%+v", st)
	})
	if ok, msg := f.matches(s.Handler()); !ok {
		t.Fatalf("caught up, yet: %s", msg)
	}
	if ok, err := s.CheckCaughtUp(context.Background()); !ok || err != nil {
		t.Fatalf("CheckCaughtUp: %v %v", ok, err)
	}
}
