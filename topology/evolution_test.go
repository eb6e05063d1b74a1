package topology_test

import (
	"errors"
	"io/fs"
	"os"
	"reflect"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// "Version 2" of the account aggregate, the one schemas/testdata/accountv2
// describes: the state and AccountOpened gain a channel (a field with a
// default), and MoneyDeposited is renamed FundsDeposited (an upcaster). Its
// decisions are version 1's (account.Decide), translated.

// Account is version 2's state (named like its record).
type Account struct {
	Status   string `avro:"status"`
	Owner    string `avro:"owner"`
	Currency string `avro:"currency"`
	Balance  int64  `avro:"balance"`
	Channel  string `avro:"channel"`
}

type openAccountV2 struct {
	Owner    string `avro:"owner"`
	Currency string `avro:"currency"`
	Channel  string `avro:"channel"`
}

func (openAccountV2) CommandType() string { return "OpenAccount" }

type accountOpenedV2 struct {
	Owner    string `avro:"owner"`
	Currency string `avro:"currency"`
	Channel  string `avro:"channel"`
}

func (accountOpenedV2) EventType() string { return "AccountOpened" }

type fundsDeposited struct {
	Amount  int64 `avro:"amount"`
	Balance int64 `avro:"balance"`
}

func (fundsDeposited) EventType() string { return "FundsDeposited" }

// The fixture's other records, frozen with its schemas: the live account
// types may gain fields (the README's procedure) without breaking it.
type depositV2 struct {
	Amount int64 `avro:"amount"`
}

func (depositV2) CommandType() string { return "Deposit" }

type withdrawV2 struct {
	Amount int64 `avro:"amount"`
}

func (withdrawV2) CommandType() string { return "Withdraw" }

type closeAccountV2 struct{}

func (closeAccountV2) CommandType() string { return "CloseAccount" }

type moneyWithdrawnV2 struct {
	Amount  int64 `avro:"amount"`
	Balance int64 `avro:"balance"`
}

func (moneyWithdrawnV2) EventType() string { return "MoneyWithdrawn" }

type accountClosedV2 struct{}

func (accountClosedV2) EventType() string { return "AccountClosed" }

var accountTypeV2 = aggregates.Type[Account]{
	Name: "account",
	Decide: func(s Account, cmd aggregates.Command) ([]aggregates.Event, error) {
		v1 := account.Account{Status: s.Status, Owner: s.Owner, Currency: s.Currency, Balance: s.Balance}
		channel := ""
		switch c := cmd.(type) {
		case openAccountV2:
			cmd, channel = account.OpenAccount{Owner: c.Owner, Currency: c.Currency}, c.Channel
		case depositV2:
			cmd = account.Deposit{Amount: c.Amount}
		case withdrawV2:
			cmd = account.Withdraw{Amount: c.Amount}
		case closeAccountV2:
			cmd = account.CloseAccount{}
		}
		evs, err := account.Decide(v1, cmd)
		for i, e := range evs {
			switch e := e.(type) {
			case account.AccountOpened:
				evs[i] = accountOpenedV2{Owner: e.Owner, Currency: e.Currency, Channel: channel}
			case account.MoneyDeposited:
				evs[i] = fundsDeposited{Amount: e.Amount, Balance: e.Balance}
			case account.MoneyWithdrawn:
				evs[i] = moneyWithdrawnV2{Amount: e.Amount, Balance: e.Balance}
			case account.AccountClosed:
				evs[i] = accountClosedV2{}
			}
		}
		return evs, err
	},
	Evolve: func(s Account, e aggregates.Event) Account {
		switch e := e.(type) {
		case accountOpenedV2:
			return Account{Status: account.StatusOpen, Owner: e.Owner, Currency: e.Currency, Channel: e.Channel}
		case fundsDeposited:
			s.Balance = e.Balance
		case moneyWithdrawnV2:
			s.Balance = e.Balance
		case accountClosedV2:
			s.Status = account.StatusClosed
		}
		return s
	},
	Commands: []aggregates.Command{openAccountV2{}, depositV2{}, withdrawV2{}, closeAccountV2{}},
	Events:   []aggregates.Event{accountOpenedV2{}, fundsDeposited{}, moneyWithdrawnV2{}, accountClosedV2{}},
}

// renameMoneyDeposited is version 2's upcaster, registered with the
// aggregate type: MoneyDeposited v1 is FundsDeposited v1 under a new name.
var renameMoneyDeposited = schemas.Upcaster{Name: "MoneyDeposited", Version: 1, Up: func(r schemas.Record) ([]schemas.Record, error) {
	return []schemas.Record{{Name: "FundsDeposited", Version: 1, Fields: r.Fields}}, nil
}}

// registryV2 serves version 2 of the account aggregate from the schema
// directory fsys/accountv2.
func registryV2(t *testing.T, fsys fs.FS) *topology.Registry {
	t.Helper()
	set, err := schemas.Load(fsys, "accountv2")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := topology.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(accountTypeV2, set, renameMoneyDeposited); err != nil {
		t.Fatal(err)
	}
	return reg
}

var accountV2Dir = os.DirFS("../schemas/testdata")

// TestSchemaEvolutionEndToEnd: events and snapshots written by version 1 of
// the account aggregate are read by version 2 into the same state, by replay
// and from the snapshot alike; a version 2 processor continues the same
// aggregates, serves a client still sending version 1 commands, and rebuilds
// from the events a state whose snapshot schema it cannot read.
func TestSchemaEvolutionEndToEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	reg1 := h.Registry
	p1 := h.StartProcessor("v1", "")
	wantStatus(t, h.Send(cmd("account", "a1", "OpenAccount", `{"owner":"Ann","currency":"EUR"}`)), wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("account", "a1", "Deposit", `{"amount":100}`)), wire.StatusAccepted, 2)
	wantStatus(t, h.Send(cmd("account", "a1", "Withdraw", `{"amount":30}`)), wire.StatusAccepted, 3)
	wantStatus(t, h.Send(cmd("account", "a1", "Deposit", `{"amount":5}`)), wire.StatusAccepted, 4)
	wantStatus(t, h.Send(cmd("account", "a2", "OpenAccount", `{"owner":"Bob","currency":"USD"}`)), wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("account", "a2", "Deposit", `{"amount":7}`)), wire.StatusAccepted, 2)
	if err := p1.Stop(); err != nil {
		t.Fatal(err)
	}

	want := map[string]Account{
		"a1": {Status: account.StatusOpen, Owner: "Ann", Currency: "EUR", Balance: 75, Channel: "unknown"},
		"a2": {Status: account.StatusOpen, Owner: "Bob", Currency: "USD", Balance: 7, Channel: "unknown"},
	}
	reg2 := registryV2(t, accountV2Dir)

	// Replay: version 1's events give version 2's state.
	byID := map[string][][]byte{}
	types := map[string][]string{}
	for _, r := range h.ReadTopic("events") {
		env, evs, err := reg2.DecodeEvents(r.Value)
		if err != nil {
			t.Fatalf("v1 event at %d/%d read by v2: %v", r.Partition, r.Offset, err)
		}
		byID[env.AggregateID] = append(byID[env.AggregateID], r.Value)
		for _, e := range evs {
			types[env.AggregateID] = append(types[env.AggregateID], env.EventType+"->"+e.EventType())
		}
	}
	if got, want := types["a1"], []string{"AccountOpened->AccountOpened", "MoneyDeposited->FundsDeposited", "MoneyWithdrawn->MoneyWithdrawn", "MoneyDeposited->FundsDeposited"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("a1's events read by v2: %v, want %v", got, want)
	}
	for id, w := range want {
		state, version, err := reg2.ReplayState("account", id, byID[id])
		if err != nil {
			t.Fatal(err)
		}
		if state != w || version != int64(len(byID[id])) {
			t.Errorf("%s replayed by v2: %+v at version %d, want %+v at %d", id, state, version, w, len(byID[id]))
		}
		// Version 1 replays its own events to the same state, channel aside.
		s1, _, err := reg1.ReplayState("account", id, byID[id])
		if err != nil {
			t.Fatal(err)
		}
		if a := s1.(account.Account); a.Balance != w.Balance || a.Owner != w.Owner || a.Status != w.Status {
			t.Errorf("%s replayed by v1: %+v", id, a)
		}
	}

	// Snapshots: version 1's changelog decodes, by resolution, to the same
	// state the replay gives.
	snaps := map[string]any{}
	for _, r := range h.ReadTopic("snapshots-changelog") {
		s, st, err := reg2.DecodeSnapshot(r.Value)
		if err != nil {
			t.Fatalf("v1 snapshot %s read by v2: %v", r.Key, err)
		}
		snaps[s.AggregateID] = st
	}
	for id, w := range want {
		if snaps[id] != w {
			t.Errorf("%s snapshot read by v2: %+v, want %+v", id, snaps[id], w)
		}
	}

	// Version 2 takes over the same state directory and topics.
	h.Registry = reg2
	p2 := h.StartProcessor("v2", p1.StateDir)
	wantStatus(t, h.Send(cmd("account", "a1", "Deposit", `{"amount":10}`)), wire.StatusAccepted, 5)
	wantStatus(t, h.Send(cmd("account", "a3", "OpenAccount", `{"owner":"Cy","currency":"EUR","channel":"web"}`)), wire.StatusAccepted, 1)
	// A client still on version 1 sends OpenAccount v1 in Avro: resolved.
	v1set, err := schemas.LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	oldOpen, err := v1set.Codec("OpenAccount")
	if err != nil {
		t.Fatal(err)
	}
	body, err := oldOpen.Encode(account.OpenAccount{Owner: "Dee", Currency: "CHF"})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, h.Send(client.Command{AggregateType: "account", AggregateID: "a4", Type: "OpenAccount", Avro: body}), wire.StatusAccepted, 1)
	// A value with a fingerprint nobody knows is answered INVALID and
	// dead-lettered, never a crash.
	bogus := append([]byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}, body[schemas.HeaderLen:]...)
	rep := h.Send(client.Command{AggregateType: "account", AggregateID: "a5", Type: "OpenAccount", Avro: bogus})
	if rep.Status != wire.StatusInvalid || rep.Code != topology.CodeUndecodable {
		t.Fatalf("unknown fingerprint: %+v", rep)
	}
	dead := false
	for _, r := range h.ReadTopic("commands-dlq") {
		dead = dead || string(r.Key) == "a5"
	}
	if !dead {
		t.Fatal("the command with an unknown fingerprint was not dead-lettered")
	}
	if err := p2.Stop(); err != nil {
		t.Fatal(err)
	}
	want["a1"] = Account{Status: account.StatusOpen, Owner: "Ann", Currency: "EUR", Balance: 85, Channel: "unknown"}
	want["a3"] = Account{Status: account.StatusOpen, Owner: "Cy", Currency: "EUR", Channel: "web"}
	want["a4"] = Account{Status: account.StatusOpen, Owner: "Dee", Currency: "CHF", Channel: "unknown"}
	if got := stateOf(t, h, reg2, "a4"); got != want["a4"] {
		t.Fatalf("a4 opened by a v1 client: %+v", got)
	}
	if got := stateOf(t, h, reg2, "a1"); got != want["a1"] {
		t.Fatalf("a1 after v2's deposit: %+v", got)
	}

	// Version 2 without history/Account.v3.avsc, the state schema the
	// version 1 aggregate writes (say, someone deleted it): version 1
	// snapshots of a2 are unreadable. A fresh processor rebuilds
	// a2's state from the events topic instead of failing, and writes it
	// back in the current schema.
	reg3 := lossyRegistryV2(t)
	if _, _, err := reg3.DecodeSnapshot(lastSnapshot(t, h, "a2")); err == nil {
		t.Fatal("the v1 snapshot of a2 should be unreadable without history/Account.v3.avsc")
	} else if se := (*topology.StateSchemaError)(nil); !errors.As(err, &se) || se.AggregateID != "a2" || se.Version != 2 {
		t.Fatalf("unreadable snapshot: %v, want a *topology.StateSchemaError for a2 at version 2", err)
	}
	h.Registry = reg3
	// Without the schema topic: version 1 published Account.v3 there, and
	// a processor that can learn it reads the snapshot as if the file were
	// in history/ (schematopic.go).
	p3 := h.StartProcessor("v2-rebuild", "", func(c *topology.Config) { c.SchemaTopic = "-" })
	wantStatus(t, h.Send(cmd("account", "a2", "Withdraw", `{"amount":2}`)), wire.StatusAccepted, 3)
	if n := p3.Stats().StateRebuilds; n != 1 {
		t.Fatalf("StateRebuilds = %d, want 1", n)
	}
	if err := p3.Stop(); err != nil {
		t.Fatal(err)
	}
	want["a2"] = Account{Status: account.StatusOpen, Owner: "Bob", Currency: "USD", Balance: 5, Channel: "unknown"}
	if got := stateOf(t, h, reg3, "a2"); got != want["a2"] {
		t.Fatalf("a2 after its rebuild: %+v, want %+v", got, want["a2"])
	}
}

// lastSnapshot returns the newest changelog value of account id.
func lastSnapshot(t *testing.T, h *topologytest.Harness, id string) []byte {
	t.Helper()
	var last []byte
	for _, r := range h.ReadTopic("snapshots-changelog") {
		if string(r.Key) == "account/"+id {
			last = r.Value
		}
	}
	if last == nil {
		t.Fatalf("no snapshot of account %s", id)
	}
	return last
}

// stateOf decodes the newest snapshot of account id with reg.
func stateOf(t *testing.T, h *topologytest.Harness, reg *topology.Registry, id string) any {
	t.Helper()
	_, st, err := reg.DecodeSnapshot(lastSnapshot(t, h, id))
	if err != nil {
		t.Fatal(err)
	}
	return st
}
