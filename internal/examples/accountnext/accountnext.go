// Package accountnext is a "next release" of the account example, for
// upgrade and rollback tests: a change compatible in every direction (full
// compatibility, as Confluent's registry names it). The state gains a note
// and MoneyDeposited a memo, both fields with a default; the decisions are
// the live account's. Its schemas are schemas/account after following
// docs/schemas.md: Account and MoneyDeposited released to history/, then
// the field added.
package accountnext

import (
	"fmt"
	"io/fs"
	"strings"
	"testing/fstest"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/aggregates/folder"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
)

// Account is the next release's state (named like its record).
type Account struct {
	Status   string                    `avro:"status"`
	Owner    string                    `avro:"owner"`
	Currency string                    `avro:"currency"`
	Balance  int64                     `avro:"balance"`
	Pending  []account.PendingTransfer `avro:"pending"`
	Credited []account.CreditMark      `avro:"credited"`
	DebitSeq int64                     `avro:"debitSeq"`
	Note     string                    `avro:"note"`
}

// MoneyDeposited is the next release's event.
type MoneyDeposited struct {
	Amount  int64  `avro:"amount"`
	Balance int64  `avro:"balance"`
	Memo    string `avro:"memo"`
}

// EventType implements aggregates.Event.
func (MoneyDeposited) EventType() string { return "MoneyDeposited" }

// Note is what the next release writes into Account.Note, and Memo into
// MoneyDeposited.Memo.
const (
	Note = "next"
	Memo = "next"
)

func (s Account) current() account.Account {
	return account.Account{Status: s.Status, Owner: s.Owner, Currency: s.Currency, Balance: s.Balance,
		Pending: s.Pending, Credited: s.Credited, DebitSeq: s.DebitSeq}
}

func fromCurrent(a account.Account) Account {
	return Account{Status: a.Status, Owner: a.Owner, Currency: a.Currency, Balance: a.Balance,
		Pending: a.Pending, Credited: a.Credited, DebitSeq: a.DebitSeq, Note: Note}
}

// Type is the next release of account.Type.
var Type = aggregates.Type[Account]{
	Name: account.Name,
	Decide: func(s Account, cmd aggregates.Command) ([]aggregates.Event, error) {
		evs, err := account.Decide(s.current(), cmd)
		for i, e := range evs {
			if d, ok := e.(account.MoneyDeposited); ok {
				evs[i] = MoneyDeposited{Amount: d.Amount, Balance: d.Balance, Memo: Memo}
			}
		}
		return evs, err
	},
	Evolve: func(s Account, e aggregates.Event) Account {
		if d, ok := e.(MoneyDeposited); ok {
			e = account.MoneyDeposited{Amount: d.Amount, Balance: d.Balance}
		}
		return fromCurrent(account.Evolve(s.current(), e))
	},
	Commands: account.Type.Commands,
	Events:   events(),
}

func events() []aggregates.Event {
	out := make([]aggregates.Event, 0, len(account.Type.Events))
	for _, e := range account.Type.Events {
		if _, ok := e.(account.MoneyDeposited); ok {
			e = MoneyDeposited{}
		}
		out = append(out, e)
	}
	return out
}

// Schemas returns the next release's schema directory "account": the
// embedded schemas/account with Account (as history/Account.v3.avsc) and
// MoneyDeposited (history/MoneyDeposited.v1.avsc) released, and a field
// with a default added to each.
func Schemas() (fstest.MapFS, error) {
	m := fstest.MapFS{}
	err := fs.WalkDir(schemas.Files, "account", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(schemas.Files, p)
		m[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, c := range []struct{ name, released, field string }{
		{"Account", "history/Account.v3.avsc", `{"name": "note", "type": "string", "default": "", "doc": "A note (the next release's field)."}`},
		{"MoneyDeposited", "history/MoneyDeposited.v1.avsc", `{"name": "memo", "type": "string", "default": "", "doc": "A memo (the next release's field)."}`},
	} {
		cur := "account/" + c.name + ".avsc"
		old := string(m[cur].Data)
		i := strings.LastIndex(old, "]")
		if i < 0 {
			return nil, fmt.Errorf("accountnext: %s has no fields", cur)
		}
		if _, ok := m["account/"+c.released]; ok {
			return nil, fmt.Errorf("accountnext: %s is released already: the fixture is out of date", c.released)
		}
		m["account/"+c.released] = &fstest.MapFile{Data: m[cur].Data}
		m[cur] = &fstest.MapFile{Data: []byte(old[:i] + "," + c.field + old[i:])}
	}
	return m, nil
}

// Registry serves the next release of the account aggregate and the folder
// aggregate. It checks that the release is fully compatible with the
// previous one (schemas.Full): the rollback to the live account is safe.
func Registry() (*topology.Registry, error) {
	fsys, err := Schemas()
	if err != nil {
		return nil, err
	}
	set, err := schemas.Load(fsys, "account")
	if err != nil {
		return nil, err
	}
	if err := set.CheckCompatibility(schemas.Full); err != nil {
		return nil, fmt.Errorf("accountnext: not fully compatible: %w", err)
	}
	reg, err := topology.NewRegistry()
	if err != nil {
		return nil, err
	}
	if err := reg.Register(Type, set); err != nil {
		return nil, err
	}
	fol, err := schemas.LoadFolder()
	if err != nil {
		return nil, err
	}
	if err := reg.Register(folder.Type, fol); err != nil {
		return nil, err
	}
	return reg, nil
}
