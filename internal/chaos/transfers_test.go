package chaos

import (
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates/account"
)

// The transfer check accepts the two ways a transfer may end (credit and
// completion, or refund) in any order across accounts, counts unended ones
// as pending, and reports every way of creating or destroying money.
func TestCheckTransfers(t *testing.T) {
	// Each source's transfers here are its first (Seq 1), unless a case
	// says otherwise with debitN.
	debitN := func(src string, v int64, seq int64, id, to string, amount int64) accountEvent {
		return accountEvent{src, v, account.TransferDebited{TransferID: id, To: to, Amount: amount, Seq: seq}}
	}
	debit := func(src string, v int64, id, to string, amount int64) accountEvent {
		return debitN(src, v, 1, id, to, amount)
	}
	credit := func(dst string, v int64, id, from string, debitVersion, amount int64) accountEvent {
		return accountEvent{dst, v, account.TransferCredited{TransferID: id, From: from, DebitVersion: debitVersion, Amount: amount, Seq: 1}}
	}
	refuse := func(dst string, v int64, id, from string, debitVersion, amount int64) accountEvent {
		return accountEvent{dst, v, account.TransferCreditRefused{TransferID: id, From: from, DebitVersion: debitVersion, Amount: amount, Seq: 1, Code: "closed"}}
	}
	completeN := func(src string, v int64, seq int64, id string) accountEvent {
		return accountEvent{src, v, account.TransferCompleted{TransferID: id, Seq: seq}}
	}
	complete := func(src string, v int64, id string) accountEvent { return completeN(src, v, 1, id) }
	refundN := func(src string, v int64, seq int64, id string, amount int64) accountEvent {
		return accountEvent{src, v, account.TransferRefunded{TransferID: id, Amount: amount, Seq: seq}}
	}
	refund := func(src string, v int64, id string, amount int64) accountEvent { return refundN(src, v, 1, id, amount) }
	cases := []struct {
		name                                  string
		events                                []accountEvent
		started, completed, refunded, pending int
		want                                  string // a violation containing this; "" none
	}{
		{"completed", []accountEvent{
			credit("b", 4, "t1", "a", 2, 10), // another partition, read first
			debit("a", 2, "t1", "b", 10), complete("a", 3, "t1"),
		}, 1, 1, 0, 0, ""},
		{"refunded", []accountEvent{
			refuse("dead", 1, "t1", "a", 2, 10), debit("a", 2, "t1", "dead", 10), refund("a", 3, "t1", 10),
		}, 1, 0, 1, 0, ""},
		{"refunded without a refusal", []accountEvent{
			debit("a", 2, "t1", "dead", 10), refund("a", 3, "t1", 10),
		}, 1, 0, 0, 0, "without a refusal"},
		{"refused and credited", []accountEvent{
			debit("a", 2, "t1", "b", 10), refuse("b", 3, "t1", "a", 2, 10), credit("b", 4, "t1", "a", 2, 10), complete("a", 3, "t1"),
		}, 1, 0, 0, 0, "decided 2 times"},
		{"refused, not refunded yet", []accountEvent{
			debit("a", 2, "t1", "b", 10), refuse("b", 3, "t1", "a", 2, 10),
		}, 1, 0, 0, 1, ""},
		{"a reused id is another transfer", []accountEvent{
			debitN("a", 2, 1, "t1", "dead", 10), refuse("dead", 1, "t1", "a", 2, 10), refundN("a", 3, 1, "t1", 10),
			debitN("a", 4, 2, "t1", "b", 10), accountEvent{"b", 1, account.TransferCredited{TransferID: "t1", From: "a", DebitVersion: 4, Amount: 10, Seq: 2}}, completeN("a", 5, 2, "t1"),
		}, 2, 1, 1, 0, ""},
		{"an old refund ending the new transfer with the same id", []accountEvent{
			debitN("a", 2, 1, "t1", "dead", 10), refuse("dead", 1, "t1", "a", 2, 10), refundN("a", 3, 1, "t1", 10),
			debitN("a", 4, 2, "t1", "b", 10), refundN("a", 5, 1, "t1", 10),
		}, 2, 0, 0, 1, "refunded 2 times"},
		{"to itself", []accountEvent{
			debit("a", 2, "t1", "a", 10), credit("a", 3, "t1", "a", 2, 10), complete("a", 4, "t1"),
		}, 1, 1, 0, 0, ""},
		{"credited, not completed yet", []accountEvent{
			debit("a", 2, "t1", "b", 10), credit("b", 4, "t1", "a", 2, 10),
		}, 1, 0, 0, 1, ""},
		{"nothing after the debit yet", []accountEvent{
			debit("a", 2, "t1", "dead", 10),
		}, 1, 0, 0, 1, ""},
		{"double credit", []accountEvent{
			debit("a", 2, "t1", "b", 10), credit("b", 4, "t1", "a", 2, 10), credit("b", 5, "t1", "a", 2, 10), complete("a", 3, "t1"),
		}, 1, 0, 0, 0, "credited 2 times"},
		{"credited and refunded", []accountEvent{
			debit("a", 2, "t1", "b", 10), credit("b", 4, "t1", "a", 2, 10), refund("a", 3, "t1", 10),
		}, 1, 0, 0, 0, "credited and refunded"},
		{"refunded twice", []accountEvent{
			debit("a", 2, "t1", "dead", 10), refuse("dead", 1, "t1", "a", 2, 10), refund("a", 3, "t1", 10), refund("a", 4, "t1", 10),
		}, 1, 0, 0, 0, "refunded 2 times"},
		{"completed without a credit (lost refund)", []accountEvent{
			debit("a", 2, "t1", "dead", 10), complete("a", 3, "t1"),
		}, 1, 0, 0, 0, "completed without a credit"},
		{"completed twice", []accountEvent{
			debit("a", 2, "t1", "b", 10), credit("b", 4, "t1", "a", 2, 10), complete("a", 3, "t1"), complete("a", 5, "t1"),
		}, 1, 0, 0, 0, "completed 2 times"},
		{"credit without a debit", []accountEvent{
			credit("b", 4, "t1", "a", 2, 10),
		}, 0, 0, 0, 0, "has no debit"},
		{"credit of another amount", []accountEvent{
			debit("a", 2, "t1", "b", 10), credit("b", 4, "t1", "a", 2, 11), complete("a", 3, "t1"),
		}, 1, 1, 0, 0, "does not match its debit"},
		{"credit on another account", []accountEvent{
			debit("a", 2, "t1", "b", 10), credit("c", 4, "t1", "a", 2, 10), complete("a", 3, "t1"),
		}, 1, 1, 0, 0, "does not match its debit"},
		{"partial refund", []accountEvent{
			debit("a", 2, "t1", "dead", 10), refuse("dead", 1, "t1", "a", 2, 10), refund("a", 3, "t1", 9),
		}, 1, 0, 1, 0, "refund of transfer"},
		{"refund of a transfer never debited", []accountEvent{
			refund("a", 3, "t9", 10),
		}, 0, 0, 0, 0, "never debited"},
		{"transfer seq debited twice", []accountEvent{
			debit("a", 2, "t1", "dead", 10), refuse("dead", 1, "t1", "a", 2, 10), refund("a", 3, "t1", 10), debit("a", 4, "t1", "dead", 10), refund("a", 5, "t1", 10),
		}, 2, 0, 0, 1, "debited twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := checkTransfers(c.events)
			got := strings.Join(rep.Violations, "; ")
			switch {
			case c.want == "" && got != "":
				t.Fatalf("unexpected violations: %s", got)
			case c.want != "" && !strings.Contains(got, c.want):
				t.Fatalf("violations %q, want one containing %q", got, c.want)
			}
			if rep.Started != c.started || rep.Completed != c.completed || rep.Refunded != c.refunded || rep.Pending != c.pending {
				t.Fatalf("started %d completed %d refunded %d pending %d, want %d %d %d %d",
					rep.Started, rep.Completed, rep.Refunded, rep.Pending, c.started, c.completed, c.refunded, c.pending)
			}
		})
	}
}
