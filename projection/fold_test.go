package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
)

// folded is the expected content of all three read models, computed by
// folding the events topic with FoldAccount.
type folded struct {
	accounts map[string]Account
	owners   map[string]map[string]Account
	totals   map[string]TotalResponse
	events   int
}

// foldTopic reads the events topic (read_committed) until it has seen want
// events and folds them.
func foldTopic(t *testing.T, brokers []string, want int) folded {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("events"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	reg := testRegistry(t)
	f := folded{accounts: map[string]Account{}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for f.events < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("folded %d of %d events in 60s", f.events, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			f.events++
			env, ev, err := reg.DecodeEvent(r.Value)
			if env.AggregateType != AccountAggregate {
				return
			}
			if err != nil {
				ev = nil
			}
			f.accounts[env.AggregateID], _ = FoldAccount(f.accounts[env.AggregateID], env, ev)
		})
	}
	f.owners = map[string]map[string]Account{}
	f.totals = map[string]TotalResponse{}
	for _, a := range f.accounts {
		if a.Owner != "" {
			if f.owners[a.Owner] == nil {
				f.owners[a.Owner] = map[string]Account{}
			}
			f.owners[a.Owner][a.ID] = a
		}
		if a.Currency != "" {
			tot := f.totals[a.Currency]
			tot.Currency = a.Currency
			tot.Total += a.Balance
			tot.Accounts++
			if a.Status == account.StatusOpen {
				tot.OpenAccounts++
			}
			f.totals[a.Currency] = tot
		}
	}
	return f
}

// matches compares what the server answers with the fold, returning a
// description of the first difference.
func (f folded) matches(h http.Handler) (bool, string) {
	for id, want := range f.accounts {
		var got Account
		if code := getJSON(h, "/v1/accounts/"+id, &got); code != 200 || !reflect.DeepEqual(got, want) {
			return false, fmt.Sprintf("account %s: %d %+v, want %+v", id, code, got, want)
		}
	}
	for owner, accs := range f.owners {
		var got OwnerResponse
		if code := getJSON(h, "/v1/owners/"+owner+"/accounts", &got); code != 200 || len(got.Accounts) != len(accs) {
			return false, fmt.Sprintf("owner %s: %d %d accounts, want %d", owner, code, len(got.Accounts), len(accs))
		}
		for _, a := range got.Accounts {
			if !reflect.DeepEqual(a, accs[a.ID]) {
				return false, fmt.Sprintf("owner %s account %s: %+v, want %+v", owner, a.ID, a, accs[a.ID])
			}
		}
	}
	var totals struct{ Totals []TotalResponse }
	if code := getJSON(h, "/v1/totals", &totals); code != 200 || len(totals.Totals) != len(f.totals) {
		return false, fmt.Sprintf("totals: %d %+v, want %+v", code, totals.Totals, f.totals)
	}
	for _, tot := range totals.Totals {
		if tot != f.totals[tot.Currency] {
			return false, fmt.Sprintf("total %s: %+v, want %+v", tot.Currency, tot, f.totals[tot.Currency])
		}
	}
	return true, ""
}

func getJSON(h http.Handler, path string, v any) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	_ = json.Unmarshal(rec.Body.Bytes(), v)
	return rec.Code
}

// workload produces a random but valid history for n accounts of a few
// owners in two currencies, each account's events in version order, and
// returns the number of events and the expected balances (computed from the
// amounts, independently of the projection).
func (e *env) workload(seed uint64, n, perAccount int, idPrefix string) (int, map[string]int64) {
	recs, balances := e.workloadRecords(seed, n, perAccount, idPrefix)
	e.produce(recs...)
	return len(recs), balances
}

// workloadRecords is workload without producing: accounts interleave, each
// account's events stay in version order.
func (e *env) workloadRecords(seed uint64, n, perAccount int, idPrefix string) ([]*kgo.Record, map[string]int64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var recs []*kgo.Record
	balances := map[string]int64{}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s%03d", idPrefix, i)
		cur := []string{"EUR", "USD"}[i%2]
		owner := fmt.Sprintf("owner-%d", i%max(5, n/3)) // about 3 accounts per owner
		recs = append(recs, rec(id, e.encode("account", id, 1, "", account.AccountOpened{Owner: owner, Currency: cur})))
		var bal int64
		v := int64(1)
		for j := 0; j < perAccount; j++ {
			v++
			amt := rng.Int64N(1000) + 1
			if bal >= amt && rng.IntN(3) == 0 {
				bal -= amt
				recs = append(recs, rec(id, e.encode("account", id, v, "", account.MoneyWithdrawn{Amount: amt, Balance: bal})))
			} else {
				bal += amt
				recs = append(recs, rec(id, e.encode("account", id, v, "", account.MoneyDeposited{Amount: amt, Balance: bal})))
			}
		}
		if i%7 == 0 && bal == 0 {
			v++
			recs = append(recs, rec(id, e.encode("account", id, v, "", account.AccountClosed{})))
		}
		balances[id] = bal
	}
	// A folder's events share the topic and must flow past the account models.
	recs = append(recs, rec(idPrefix+"folder", e.encode("folder", idPrefix+"folder", 1, "FolderCreated", nil)))
	return interleave(recs), balances
}

// interleave reorders records round-robin across keys, keeping each key's order.
func interleave(recs []*kgo.Record) []*kgo.Record {
	byKey := map[string][]*kgo.Record{}
	var keys []string
	for _, r := range recs {
		k := string(r.Key)
		if byKey[k] == nil {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], r)
	}
	out := make([]*kgo.Record, 0, len(recs))
	for len(out) < len(recs) {
		for _, k := range keys {
			if q := byKey[k]; len(q) > 0 {
				out = append(out, q[0])
				byKey[k] = q[1:]
			}
		}
	}
	return out
}
