package topology_test

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// fixture copies schemas/testdata/accountv2 into a MapFS, with changes.
func fixture(t *testing.T, change map[string]string) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(accountV2Dir, "accountv2", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(accountV2Dir, p)
		m[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, text := range change {
		if text == "" {
			delete(m, p)
		} else {
			m[p] = &fstest.MapFile{Data: []byte(text)}
		}
	}
	return m
}

// v1Event returns an events-topic value written by version 1.
func v1Event(t *testing.T, version int64, e interface{ EventType() string }) []byte {
	t.Helper()
	acc, err := schemas.LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	env, err := schemas.LoadEnvelopes()
	if err != nil {
		t.Fatal(err)
	}
	c, err := acc.Codec(e.EventType())
	if err != nil {
		t.Fatal(err)
	}
	payload, err := c.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := env.Codec("kcqrs.Event")
	value, err := ec.Encode(wire.Event{AggregateType: "account", AggregateID: "x", Version: version, EventType: e.EventType(), CommandID: "c", Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	return value
}

// TestRegisterRefusesUnreadableHistory: a processor never starts with old
// schema versions its current schemas and upcasters cannot read; the error
// says which and why.
func TestRegisterRefusesUnreadableHistory(t *testing.T) {
	set, err := schemas.Load(accountV2Dir, "accountv2")
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := topology.NewRegistry()
	err = reg.Register(accountTypeV2, set) // without the MoneyDeposited upcaster
	if err == nil || !strings.Contains(err.Error(), "kcqrs.example.account.MoneyDeposited v1 (accountv2/history/MoneyDeposited.v1.avsc): no current schema and no upcaster reads it") {
		t.Fatalf("Register without the upcaster: %v", err)
	}
	// A state change that drops a default: v1 snapshots could not be read.
	bad := fixture(t, map[string]string{"accountv2/Account.avsc": `{"type":"record","name":"Account","namespace":"kcqrs.example.account","fields":[
		{"name":"status","type":"string"},{"name":"owner","type":"string"},{"name":"currency","type":"string"},{"name":"balance","type":"int"},{"name":"channel","type":"string"}]}`})
	set, err = schemas.Load(bad, "accountv2")
	if err != nil {
		t.Fatal(err)
	}
	reg, _ = topology.NewRegistry()
	err = reg.Register(accountTypeV2, set, renameMoneyDeposited)
	for _, want := range []string{"Account.balance: writer's long cannot be read as int", "Account.channel: field is missing in the writer's schema and has no default"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Register with an incompatible state: %v; want it to say %q", err, want)
		}
	}
}

// TestDecodeEventsUpcastPaths: splits go through DecodeEvents (DecodeEvent
// refuses them), an upcaster's output that is not an event of the aggregate
// is an error, and so is an unknown fingerprint.
func TestDecodeEventsUpcastPaths(t *testing.T) {
	set, err := schemas.Load(accountV2Dir, "accountv2")
	if err != nil {
		t.Fatal(err)
	}
	split := schemas.Upcaster{Name: "MoneyDeposited", Version: 1, Up: func(r schemas.Record) ([]schemas.Record, error) {
		return []schemas.Record{
			{Name: "FundsDeposited", Version: 1, Fields: r.Fields},
			{Name: "FundsDeposited", Version: 1, Fields: map[string]any{"amount": int64(0), "balance": r.Fields["balance"]}},
		}, nil
	}}
	reg, _ := topology.NewRegistry()
	if err := reg.Register(accountTypeV2, set, split); err != nil {
		t.Fatal(err)
	}
	value := v1Event(t, 2, account.MoneyDeposited{Amount: 5, Balance: 5})
	_, evs, err := reg.DecodeEvents(value)
	if err != nil || len(evs) != 2 || evs[0] != (fundsDeposited{Amount: 5, Balance: 5}) || evs[1] != (fundsDeposited{Amount: 0, Balance: 5}) {
		t.Fatalf("DecodeEvents of a split: %v, %v", evs, err)
	}
	if _, _, err := reg.DecodeEvent(value); err == nil || !strings.Contains(err.Error(), "upcasts to 2 events; use DecodeEvents") {
		t.Fatalf("DecodeEvent of a split: %v", err)
	}

	// An upcaster that produces a record the aggregate does not handle
	// (OpenAccount is a command).
	wrong := schemas.Upcaster{Name: "MoneyDeposited", Version: 1, Up: func(r schemas.Record) ([]schemas.Record, error) {
		return []schemas.Record{{Name: "OpenAccount", Version: 2, Fields: map[string]any{"owner": "o", "currency": "EUR", "channel": "c"}}}, nil
	}}
	reg, _ = topology.NewRegistry()
	if err := reg.Register(accountTypeV2, set, wrong); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.DecodeEvents(value); err == nil || !strings.Contains(err.Error(), `read as OpenAccount v2, which is not an event of aggregate type "account"`) {
		t.Fatalf("upcast to a non-event: %v", err)
	}

	// A payload with a fingerprint nobody knows.
	payload := append([]byte{0xC3, 0x01, 9, 9, 9, 9, 9, 9, 9, 9}, 0)
	env, _ := schemas.LoadEnvelopes()
	ec, _ := env.Codec("kcqrs.Event")
	bogus, _ := ec.Encode(wire.Event{AggregateType: "account", AggregateID: "x", Version: 1, EventType: "AccountClosed", Payload: payload})
	var ue *schemas.UnknownSchemaError
	if _, _, err := reg.DecodeEvents(bogus); !errors.As(err, &ue) {
		t.Fatalf("unknown fingerprint: %v", err)
	}
}

// TestReplayStateChecks: a replay refuses events of another aggregate and
// version gaps or duplicates rather than folding them into a wrong state.
func TestReplayStateChecks(t *testing.T) {
	reg := registryV2(t, accountV2Dir)
	opened := v1Event(t, 1, account.AccountOpened{Owner: "o", Currency: "EUR"})
	dep := v1Event(t, 2, account.MoneyDeposited{Amount: 3, Balance: 3})
	st, v, err := reg.ReplayState("account", "x", [][]byte{opened, dep})
	if err != nil || v != 2 || st != (Account{Status: account.StatusOpen, Owner: "o", Currency: "EUR", Balance: 3, Channel: "unknown"}) {
		t.Fatalf("replay: %+v at %d, %v", st, v, err)
	}
	for _, tc := range []struct {
		id     string
		values [][]byte
		err    string
	}{
		{"x", [][]byte{dep}, "event version 2 after 0"},
		{"x", [][]byte{opened, opened}, "event version 1 after 1"},
		{"y", [][]byte{opened}, `value 0 belongs to account "x"`},
	} {
		if _, _, err := reg.ReplayState("account", tc.id, tc.values); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ReplayState: %v, want %q", err, tc.err)
		}
	}
	if _, _, err := reg.ReplayState("nope", "x", nil); err == nil {
		t.Error("ReplayState of an unknown aggregate type")
	}
}

// TestSchemasCompatible (with schemas.TestSchemasCompatible, what `make
// schemas-check` runs): every aggregate type the binaries serve, with its
// upcasters, can read every older version of its commands, events and
// state. Register runs the check; its error lists what broke.
//
// It checks the schemas the binaries serve, not the accountv2 fixture of
// the evolution tests: that fixture pins its own frozen copy of the account
// schemas, so changing a live schema (the README's procedure) must not
// fail the check with an error about the fixture.
func TestSchemasCompatible(t *testing.T) {
	if _, err := examples.Registry(); err != nil {
		t.Fatalf("the example aggregates' schemas:\n%v", err)
	}
}
