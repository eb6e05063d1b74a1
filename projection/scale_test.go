package projection

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
)

// TestOneOwnerOneCurrencyAtScale folds 100,000 accounts of one owner in one
// currency. Every table entry must stay small whatever the number of
// accounts: an owner or currency entry holding all its accounts outgrows a
// Kafka message (1 MB) after a few thousand, goka's emit fails and the group
// stops, again on every restart.
func TestOneOwnerOneCurrencyAtScale(t *testing.T) {
	const accounts = 100_000
	e := newEnv(t)
	recs := make([]*kgo.Record, 0, accounts+accounts/10)
	var want int64
	for i := range accounts {
		id := fmt.Sprintf("whale-%06d", i)
		recs = append(recs, rec(id, e.encode("account", id, 1, "", account.AccountOpened{Owner: "whale/1", Currency: "EUR"})))
		if i%10 == 0 {
			recs = append(recs, rec(id, e.encode("account", id, 2, "", account.MoneyDeposited{Amount: int64(i%7 + 1), Balance: int64(i%7 + 1)})))
			want += int64(i%7 + 1)
		}
	}
	// An owner whose escaped name is a prefix of the whale's must not see its accounts.
	recs = append(recs, rec("minnow", e.encode("account", "minnow", 1, "", account.AccountOpened{Owner: "whale", Currency: "EUR"})))
	for i := 0; i < len(recs); i += 10_000 {
		e.produce(recs[i:min(i+10_000, len(recs))]...)
	}
	p := e.startProjector(e.config(t.TempDir(), 1))
	s := e.startServer(t.TempDir(), 1)
	h := s.Handler()
	deadline := time.Now().Add(10 * time.Minute)
	var tot TotalResponse
	for {
		select {
		case err := <-p.done:
			p.done <- err // for the cleanup's stop
			t.Fatalf("projector stopped: %v", err)
		default:
		}
		code := getJSON(h, "/v1/totals/EUR", &tot)
		if code == 200 && tot.Accounts == accounts+1 && tot.Total == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("EUR total not reached: %d %+v, want %d accounts and %d; stats %+v", code, tot, accounts+1, want, p.Stats())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if tot.OpenAccounts != accounts+1 {
		t.Fatalf("EUR total %+v: want %d open accounts", tot, accounts+1)
	}
	// The owner's accounts, page by page, each once, in order. The owners
	// group is a read model of its own, not ordered with the totals: its
	// listing is complete once it has caught up, which the totals do not say.
	listing := func() int {
		seen := 0
		after := ""
		for pages := 0; ; pages++ {
			if pages > accounts {
				t.Fatal("paging does not end")
			}
			var o OwnerResponse
			path := "/v1/owners/" + url.PathEscape("whale/1") + "/accounts?limit=5000&after=" + url.QueryEscape(after)
			if code := getJSON(h, path, &o); code != 200 {
				t.Fatalf("%s: %d %+v", path, code, o)
			}
			for _, a := range o.Accounts {
				if a.ID <= after || a.Owner != "whale/1" {
					t.Fatalf("page after %q holds %+v", after, a)
				}
				after = a.ID
				seen++
			}
			if o.Next == "" {
				break
			}
		}
		return seen
	}
	for seen := listing(); seen != accounts; seen = listing() {
		if seen > accounts || time.Now().After(deadline) {
			t.Fatalf("owner listing has %d accounts, want %d; stats %+v", seen, accounts, p.Stats())
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		var o OwnerResponse
		code := getJSON(h, "/v1/owners/whale/accounts", &o)
		if code == 200 && len(o.Accounts) == 1 && o.Accounts[0].ID == "minnow" {
			break
		}
		if (code == 200 && len(o.Accounts) > 1) || time.Now().After(deadline) {
			t.Fatalf("owner whale: %d %+v", code, o)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st := p.Stats(); st.DeadLetters != 0 || st.Gaps != 0 {
		t.Fatalf("stats %+v", st)
	}
}
