package schemas

import (
	"math"
	"reflect"
	"sort"
	"testing"

	"github.com/kcqrs/kcqrs/wire"
)

// Local copies of the example domains' Go types. The real ones live in
// aggregates/account and aggregates/folder; these tests must not depend on
// them, only on the schemas.

type account struct {
	Status   string            `avro:"status"`
	Owner    string            `avro:"owner"`
	Currency string            `avro:"currency"`
	Balance  int64             `avro:"balance"`
	Pending  []pendingTransfer `avro:"pending"`
	Credited []creditMark      `avro:"credited"`
	DebitSeq int64             `avro:"debitSeq"`
}
type creditMark struct {
	From         string `avro:"from"`
	DebitVersion int64  `avro:"debitVersion"`
}
type pendingTransfer struct {
	TransferID string `avro:"transferId"`
	To         string `avro:"to"`
	Amount     int64  `avro:"amount"`
	Seq        int64  `avro:"seq"`
}
type payOutAndClose struct{}
type debitForTransfer struct {
	TransferID string `avro:"transferId"`
	To         string `avro:"to"`
	Amount     int64  `avro:"amount"`
}
type creditForTransfer struct {
	TransferID   string `avro:"transferId"`
	From         string `avro:"from"`
	DebitVersion int64  `avro:"debitVersion"`
	Amount       int64  `avro:"amount"`
	Seq          int64  `avro:"seq"`
}
type completeTransfer struct {
	TransferID string `avro:"transferId"`
	Seq        int64  `avro:"seq"`
}
type refundTransfer struct {
	TransferID string `avro:"transferId"`
	Reason     string `avro:"reason"`
	Seq        int64  `avro:"seq"`
}
type transferDebited struct {
	TransferID string `avro:"transferId"`
	To         string `avro:"to"`
	Amount     int64  `avro:"amount"`
	Balance    int64  `avro:"balance"`
	Seq        int64  `avro:"seq"`
}
type transferCredited struct {
	TransferID   string `avro:"transferId"`
	From         string `avro:"from"`
	DebitVersion int64  `avro:"debitVersion"`
	Amount       int64  `avro:"amount"`
	Balance      int64  `avro:"balance"`
	Seq          int64  `avro:"seq"`
}
type transferCreditRefused struct {
	TransferID   string `avro:"transferId"`
	From         string `avro:"from"`
	DebitVersion int64  `avro:"debitVersion"`
	Amount       int64  `avro:"amount"`
	Seq          int64  `avro:"seq"`
	Code         string `avro:"code"`
	Reason       string `avro:"reason"`
}
type transferCompleted struct {
	TransferID string `avro:"transferId"`
	Seq        int64  `avro:"seq"`
}
type transferRefunded struct {
	TransferID string `avro:"transferId"`
	Amount     int64  `avro:"amount"`
	Balance    int64  `avro:"balance"`
	Reason     string `avro:"reason"`
	Seq        int64  `avro:"seq"`
}
type openAccount struct {
	Owner    string `avro:"owner"`
	Currency string `avro:"currency"`
}
type deposit struct {
	Amount int64 `avro:"amount"`
}
type withdraw struct {
	Amount int64 `avro:"amount"`
}
type closeAccount struct{}
type accountOpened struct {
	Owner    string `avro:"owner"`
	Currency string `avro:"currency"`
}
type moneyDeposited struct {
	Amount  int64 `avro:"amount"`
	Balance int64 `avro:"balance"`
}
type moneyWithdrawn struct {
	Amount  int64 `avro:"amount"`
	Balance int64 `avro:"balance"`
}
type accountClosed struct{}

type folder struct {
	Status string `avro:"status"`
	Name   string `avro:"name"`
}
type createFolder struct {
	Name string `avro:"name"`
}
type renameFolder struct {
	Name string `avro:"name"`
}
type deleteFolder struct{}
type folderCreated struct {
	Name string `avro:"name"`
}
type folderRenamed struct {
	From string `avro:"from"`
	To   string `avro:"to"`
}
type folderDeleted struct{}

// sample is one known value of a record, for round trips and golden files.
type sample struct {
	name  string // full record name
	value any    // a struct value
}

func sampleReply() wire.Reply {
	return wire.Reply{
		CommandID:     "cmd-7f3a",
		AggregateType: "account",
		AggregateID:   "acc-42",
		Status:        wire.StatusRejected,
		Version:       7,
		Events:        0,
		Code:          "insufficient_funds",
		Message:       "balance 100 < 250 (€)",
		Duplicate:     true,
	}
}

func sampleSnapshot(recent int) wire.Snapshot {
	s := wire.Snapshot{
		AggregateType: "account",
		AggregateID:   "acc-42",
		Version:       math.MaxInt64,
		State:         []byte{0xC3, 0x01, 0x00, 0xFF, 0x7F, 0x80},
	}
	statuses := []wire.Status{wire.StatusAccepted, wire.StatusConflict, wire.StatusInternalError}
	for i := range recent {
		r := sampleReply()
		r.CommandID = "cmd-" + string(rune('a'+i%26))
		r.Status = statuses[i%len(statuses)]
		r.Version = int64(i) - 1
		r.Events = int32(i)
		s.Recent = append(s.Recent, wire.Remember(r))
	}
	return s
}

func samples() []sample {
	return []sample{
		{"kcqrs.Reply", sampleReply()},
		{"kcqrs.Event", wire.Event{
			AggregateType:   "account",
			AggregateID:     "acc-42",
			Version:         1,
			EventType:       "kcqrs.example.account.MoneyDeposited",
			CommandID:       "cmd-7f3a",
			TimestampMillis: 1_767_225_600_000,
			Payload:         []byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0xC8, 0x01, 0xC8, 0x01},
		}},
		{"kcqrs.Snapshot", sampleSnapshot(3)},

		{"kcqrs.example.account.Account", account{Status: "open", Owner: "Ada Lovelace", Currency: "EUR", Balance: 12_345,
			Pending:  []pendingTransfer{{TransferID: "t-1", To: "acc-2", Amount: 500, Seq: 3}},
			Credited: []creditMark{{From: "acc-3", DebitVersion: 7}}, DebitSeq: 3}},
		{"kcqrs.example.account.PayOutAndClose", payOutAndClose{}},
		{"kcqrs.example.account.DebitForTransfer", debitForTransfer{TransferID: "t-1", To: "acc-2", Amount: 500}},
		{"kcqrs.example.account.CreditForTransfer", creditForTransfer{TransferID: "t-1", From: "acc-1", DebitVersion: 4, Amount: 500, Seq: 3}},
		{"kcqrs.example.account.CompleteTransfer", completeTransfer{TransferID: "t-1", Seq: 3}},
		{"kcqrs.example.account.RefundTransfer", refundTransfer{TransferID: "t-1", Reason: "closed: account is closed", Seq: 3}},
		{"kcqrs.example.account.TransferDebited", transferDebited{TransferID: "t-1", To: "acc-2", Amount: 500, Balance: 11_845, Seq: 3}},
		{"kcqrs.example.account.TransferCredited", transferCredited{TransferID: "t-1", From: "acc-1", DebitVersion: 4, Amount: 500, Balance: 500, Seq: 3}},
		{"kcqrs.example.account.TransferCreditRefused", transferCreditRefused{TransferID: "t-1", From: "acc-1", DebitVersion: 4, Amount: 500, Seq: 3, Code: "not_open", Reason: "account was never opened"}},
		{"kcqrs.example.account.TransferCompleted", transferCompleted{TransferID: "t-1", Seq: 3}},
		{"kcqrs.example.account.TransferRefunded", transferRefunded{TransferID: "t-1", Amount: 500, Balance: 12_345, Reason: "closed: account is closed", Seq: 3}},
		{"kcqrs.example.account.OpenAccount", openAccount{Owner: "Ada Lovelace", Currency: "EUR"}},
		{"kcqrs.example.account.Deposit", deposit{Amount: 250}},
		{"kcqrs.example.account.Withdraw", withdraw{Amount: 100}},
		{"kcqrs.example.account.CloseAccount", closeAccount{}},
		{"kcqrs.example.account.AccountOpened", accountOpened{Owner: "Ada Lovelace", Currency: "EUR"}},
		{"kcqrs.example.account.MoneyDeposited", moneyDeposited{Amount: 250, Balance: 12_595}},
		{"kcqrs.example.account.MoneyWithdrawn", moneyWithdrawn{Amount: 100, Balance: 12_495}},
		{"kcqrs.example.account.AccountClosed", accountClosed{}},

		{"kcqrs.example.folder.Folder", folder{Status: "created", Name: "Reports 2026"}},
		{"kcqrs.example.folder.CreateFolder", createFolder{Name: "Reports"}},
		{"kcqrs.example.folder.RenameFolder", renameFolder{Name: "Reports 2026"}},
		{"kcqrs.example.folder.DeleteFolder", deleteFolder{}},
		{"kcqrs.example.folder.FolderCreated", folderCreated{Name: "Reports"}},
		{"kcqrs.example.folder.FolderRenamed", folderRenamed{From: "Reports", To: "Reports 2026"}},
		{"kcqrs.example.folder.FolderDeleted", folderDeleted{}},
	}
}

// allSets loads every embedded set, merged into one.
func allSets(t testing.TB) *Set {
	t.Helper()
	env, err := LoadEnvelopes()
	if err != nil {
		t.Fatal(err)
	}
	acc, err := LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	fol, err := LoadFolder()
	if err != nil {
		t.Fatal(err)
	}
	all, err := Merge(env, acc, fol)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func mustCodec(t testing.TB, s *Set, name string) *Codec {
	t.Helper()
	c, err := s.Codec(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newPtr returns a pointer to a new zero value of v's type.
func newPtr(v any) any { return reflect.New(reflect.TypeOf(v)).Interface() }

func deref(p any) any { return reflect.ValueOf(p).Elem().Interface() }

func TestEverySchemaHasASample(t *testing.T) {
	var have []string
	for _, s := range samples() {
		have = append(have, s.name)
	}
	sort.Strings(have)
	if want := allSets(t).Names(); !reflect.DeepEqual(have, want) {
		t.Fatalf("samples cover %v\nschemas are %v", have, want)
	}
}
