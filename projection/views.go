package projection

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kadm"
)

// ReadModels are goka views of one version's three tables: the query side.
type ReadModels struct {
	Names                    Names
	accounts, owners, totals *goka.View
	stores                   *storeSet
}

// OpenReadModels creates the views of cfg.Names' tables (creating the
// topics if needed, so a query server may start before the projector). Run
// must run before they answer.
func OpenReadModels(ctx context.Context, cfg Config) (*ReadModels, error) {
	cfg.setDefaults()
	if len(cfg.Brokers) == 0 || cfg.StateDir == "" {
		return nil, errors.New("projection: read models: Brokers and StateDir are required")
	}
	if _, err := EnsureTopics(ctx, cfg); err != nil {
		return nil, err
	}
	n := cfg.Names
	stores := &storeSet{}
	opts := func(table string) []goka.ViewOption {
		return []goka.ViewOption{
			goka.WithViewClientID(table + "-view"),
			goka.WithViewHasher(Murmur2),
			goka.WithViewStorageBuilder(pebbleBuilder(filepath.Join(cfg.StateDir, "views"), cfg.CacheBytes, stores)),
			goka.WithViewConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(cfg.saramaConfig())),
			goka.WithViewTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(cfg.saramaConfig(), cfg.topicManagerConfig())),
			goka.WithViewLogger(gokaLogger{cfg.Logger.With("view", table)}),
			goka.WithViewAutoReconnect(),
		}
	}
	rm := &ReadModels{Names: n, stores: stores}
	var err error
	mk := func(dst **goka.View, g goka.Group, codec goka.Codec) {
		if err != nil {
			return
		}
		t := goka.GroupTable(g)
		*dst, err = goka.NewView(cfg.Brokers, t, codec, opts(string(t))...)
		if err != nil {
			err = fmt.Errorf("projection: view of %s: %w", t, err)
		}
	}
	mk(&rm.accounts, n.AccountsGroup(), jsonCodec[Account]{})
	mk(&rm.owners, n.OwnersGroup(), jsonCodec[Account]{})
	mk(&rm.totals, n.TotalsGroup(), jsonCodec[CurrencyTotal]{})
	if err != nil {
		return nil, err
	}
	return rm, nil
}

// Run runs the three views until ctx ends.
func (r *ReadModels) Run(ctx context.Context) error {
	views := []*goka.View{r.accounts, r.owners, r.totals}
	errs := make(chan error, len(views))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, v := range views {
		go func() {
			err := v.Run(ctx)
			if err != nil {
				err = fmt.Errorf("projection: view %s: %w", v.Topic(), err)
			}
			cancel()
			errs <- err
		}()
	}
	var all []error
	for range views {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// Recovered reports whether all three views have caught up with their tables.
func (r *ReadModels) Recovered() bool {
	return r.accounts.Recovered() && r.owners.Recovered() && r.totals.Recovered()
}

// Account returns the account entry, nil if there is none.
func (r *ReadModels) Account(id string) (*Account, error) {
	v, err := r.accounts.Get(id)
	if err != nil || v == nil {
		return nil, err
	}
	return v.(*Account), nil
}

// Owner returns up to limit accounts of owner with ids after after (""
// from the first), in id order, and whether more follow. The owners table
// is an index (id and owner); the entries come from the accounts view (the
// index entry itself while the accounts view has not got the account yet).
func (r *ReadModels) Owner(owner, after string, limit int) ([]Account, bool, error) {
	prefix := OwnerPrefix(owner)
	start := prefix
	if after != "" {
		start = OwnerKey(owner, after) + "\x00" // the first key after it
	}
	it, err := r.owners.IteratorWithRange(start, string(prefixEnd([]byte(prefix))))
	if err != nil {
		return nil, false, err
	}
	defer it.Release()
	var out []Account
	for it.Next() {
		v, err := it.Value()
		if err != nil {
			return nil, false, err
		}
		idx, ok := v.(*Account)
		if !ok || idx == nil {
			continue
		}
		if len(out) == limit {
			return out, true, nil
		}
		a, err := r.Account(idx.ID)
		if err != nil {
			return nil, false, err
		}
		if a == nil {
			a = idx
		}
		out = append(out, *a)
	}
	return out, false, it.Err()
}

// Totals returns the running totals of all currencies, by currency.
func (r *ReadModels) Totals() ([]TotalResponse, error) { return r.sumTotals("") }

// Total returns the running total of one currency, nil if it has no accounts.
func (r *ReadModels) Total(currency string) (*TotalResponse, error) {
	ts, err := r.sumTotals(currency + "|")
	if err != nil || len(ts) == 0 {
		return nil, err
	}
	return &ts[0], nil
}

// sumTotals adds up the partitions' counters of the entries whose keys
// start with prefix.
func (r *ReadModels) sumTotals(prefix string) ([]TotalResponse, error) {
	var it goka.Iterator
	var err error
	if prefix == "" {
		it, err = r.totals.Iterator()
	} else {
		it, err = r.totals.IteratorWithRange(prefix, "") // "" limit: a prefix
	}
	if err != nil {
		return nil, err
	}
	defer it.Release()
	by := map[string]*TotalResponse{}
	for it.Next() {
		v, err := it.Value()
		if err != nil {
			return nil, err
		}
		c, ok := v.(*CurrencyTotal)
		if !ok || c == nil || (prefix != "" && prefix != c.Currency+"|") {
			continue // another currency whose name starts with this one and "|"
		}
		t := by[c.Currency]
		if t == nil {
			t = &TotalResponse{Currency: c.Currency}
			by[c.Currency] = t
		}
		t.Total += c.Total
		t.Accounts += int(c.Accounts)
		t.OpenAccounts += int(c.Open)
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	out := make([]TotalResponse, 0, len(by))
	for _, t := range by {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Currency < out[j].Currency })
	return out, nil
}

// AllAccounts returns every account entry, by id (for tests and tooling).
func (r *ReadModels) AllAccounts() (map[string]Account, error) {
	it, err := r.accounts.Iterator()
	if err != nil {
		return nil, err
	}
	defer it.Release()
	out := map[string]Account{}
	for it.Next() {
		v, err := it.Value()
		if err != nil {
			return nil, err
		}
		if a, ok := v.(*Account); ok && a != nil {
			out[it.Key()] = *a
		}
	}
	return out, it.Err()
}

// TablesCaughtUp reports whether every view has read its table to the end
// offsets listed now: then the views show everything the groups wrote up
// to this moment. Table topics are not transactional, so the end offset is
// exact.
func (r *ReadModels) TablesCaughtUp(ctx context.Context, adm *kadm.Client) (bool, error) {
	if !r.Recovered() {
		return false, nil
	}
	tables := r.Names.Tables()
	starts, err := adm.ListStartOffsets(ctx, tables...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return false, err
	}
	ends, err := adm.ListEndOffsets(ctx, tables...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return false, err
	}
	for _, t := range tables {
		for p, end := range ends[t] {
			if end.Offset <= starts[t][p].Offset {
				continue
			}
			st := r.stores.get(t, p)
			if st == nil {
				return false, nil
			}
			// goka stores the offset of the last record it applied.
			off, err := st.GetOffset(-1)
			if err != nil {
				return false, err
			}
			if off < end.Offset-1 {
				return false, nil
			}
		}
	}
	return true, nil
}
