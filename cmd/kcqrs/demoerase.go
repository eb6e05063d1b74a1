package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/projection"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// demoMasterKey is the master key of the demo's personal data (the account
// owner, docs/erasure.md). A constant, like demoSigningKey: the demo's broker
// authenticates nobody, and a demo restarted on its data directory must read
// the keys it wrote. Never a constant in production: --master-key-file.
func demoMasterKey() *shred.MasterKey {
	mk, err := shred.NewMasterKey([]byte("kcqrs-demo-master-key-32-bytes!!"))
	if err != nil {
		panic(err) // 32 bytes
	}
	return mk
}

// followDemoKeys follows the keys topic for the query API and the blind
// owners index of the projector.
func followDemoKeys(ctx context.Context, brokers []string, mk shred.KeyWrapper, log *slog.Logger) (func(string, string, string) string, *projection.Personal, error) {
	ring := shred.NewKeyring()
	idx, err := shred.NewBlindIndex(mk, projection.OwnerIndexPurpose)
	if err != nil {
		return nil, nil, err
	}
	loaded, failed := make(chan struct{}), make(chan error, 1)
	go func() {
		err := topology.FollowKeys(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, "kcqrs-keys", mk, ring, func() { close(loaded) })
		if err != nil && ctx.Err() == nil {
			log.Error("following the keys topic stopped", "err", err)
		}
		failed <- err
	}()
	select {
	case <-loaded:
		return topology.PersonalOpener(ring), &projection.Personal{Keys: ring, Owners: idx}, nil
	case err := <-failed:
		return nil, nil, err
	}
}

// showErasure opens an account for Eve, shows it, erases it and shows what
// is left: the read model, a command on it, and its events folded again.
func showErasure(ctx context.Context, cl *client.Client, proj *projection.Service, brokers []string, mk shred.KeyWrapper, run string) {
	id := "acc-eve-" + run
	fmt.Printf("\nerasure of personal data (crypto-shredding, docs/erasure.md): account %s of \"Eve Example\"\n", id)
	send := func(what string, c client.Command) (wire.Reply, bool) {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		rep, err := cl.Send(sctx, c)
		if err != nil {
			fmt.Printf("  %s: %v\n", what, err)
			return rep, false
		}
		detail := rep.Code
		switch {
		case rep.Message != "" && detail != "":
			detail += ": " + truncate(rep.Message, 70)
		case rep.Message != "":
			detail = truncate(rep.Message, 70)
		}
		fmt.Printf("  %-36s %-9s version %d  %s\n", what, rep.Status, rep.Version, detail)
		return rep, true
	}
	if _, ok := send("open (owner Eve Example)", client.Command{AggregateType: "account", AggregateID: id, Type: "OpenAccount", JSON: []byte(`{"owner":"Eve Example","currency":"EUR"}`)}); !ok {
		return
	}
	if _, ok := send("deposit 30.00", client.Command{AggregateType: "account", AggregateID: id, Type: "Deposit", JSON: []byte(`{"amount":3000}`)}); !ok {
		return
	}
	query := func(version int64) {
		path := fmt.Sprintf("/v1/accounts/%s?min_version=%d&wait=10s", id, version)
		code, body, err := get(ctx, "http://"+proj.Addr()+path)
		if err != nil {
			fmt.Printf("  GET %s: %v\n", path, err)
			return
		}
		fmt.Printf("  GET %s -> %d %s\n", path, code, truncate(body, 110))
	}
	query(2)
	// The owners index is blind (an HMAC of the owner): found by name
	// although every table holds the owner sealed.
	owners := "/v1/owners/" + url.PathEscape("Eve Example") + "/accounts"
	listed := func() bool {
		_, body, err := get(ctx, "http://"+proj.Addr()+owners)
		return err == nil && strings.Contains(body, `"`+id+`"`)
	}
	showOwners := func() {
		code, body, err := get(ctx, "http://"+proj.Addr()+owners)
		if err != nil {
			fmt.Printf("  GET %s: %v\n", owners, err)
			return
		}
		fmt.Printf("  GET %s -> %d, %s listed: %v\n", owners, code, id, strings.Contains(body, `"`+id+`"`))
	}
	for wait := time.Now().Add(5 * time.Second); time.Now().Before(wait) && !listed(); time.Sleep(100 * time.Millisecond) {
	}
	showOwners()
	token, err := shred.EraseToken(mk, "account/"+id)
	if err != nil {
		fmt.Printf("  erase: %v\n", err)
		return
	}
	if _, ok := send("kcqrs erase account "+id, client.Command{AggregateType: "account", AggregateID: id, Type: topology.EraseCommandType, Avro: token}); !ok {
		return
	}
	send("deposit after the erasure", client.Command{AggregateType: "account", AggregateID: id, Type: "Deposit", JSON: []byte(`{"amount":100}`)})
	// The query API learns the erasure from the keys topic within a fetch.
	for wait := time.Now().Add(5 * time.Second); time.Now().Before(wait); time.Sleep(100 * time.Millisecond) {
		if _, body, err := get(ctx, "http://"+proj.Addr()+"/v1/accounts/"+id); err == nil && strings.Contains(body, shred.Erased) {
			break
		}
	}
	query(2)
	for wait := time.Now().Add(5 * time.Second); time.Now().Before(wait) && listed(); time.Sleep(100 * time.Millisecond) {
	}
	showOwners()
	state, version, err := replayDemoAccount(ctx, brokers, mk, id)
	if err != nil {
		fmt.Printf("  its events folded again: %v\n", err)
		return
	}
	fmt.Printf("  its events folded again (the log is intact): owner %q, balance %d, version %d\n", state.Owner, state.Balance, version)
}

// replayDemoAccount folds the account's events from the events topic, read
// with the keys of the keys topic.
func replayDemoAccount(ctx context.Context, brokers []string, mk shred.KeyWrapper, id string) (account.Account, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...)}
	ring := shred.NewKeyring()
	if _, err := topology.LoadKeys(ctx, opts, "kcqrs-keys", mk, ring); err != nil {
		return account.Account{}, 0, err
	}
	reg, err := examples.Registry()
	if err != nil {
		return account.Account{}, 0, err
	}
	if err := reg.EnablePersonal(ring); err != nil {
		return account.Account{}, 0, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return account.Account{}, 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var values [][]byte
	part := topology.PartitionFor([]byte(id), 4)
	if err := readKey(ctx, cl, adm, "events", part, id, func(v []byte) { values = append(values, v) }); err != nil {
		return account.Account{}, 0, err
	}
	st, v, err := reg.ReplayState("account", id, values)
	if err != nil {
		return account.Account{}, 0, err
	}
	a, _ := st.(account.Account)
	return a, v, nil
}
