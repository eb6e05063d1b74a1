package saga_test

import (
	"strings"
	"time"

	"testing"

	"github.com/kcqrs/kcqrs/aggregates/account"
)

// TestTransferToItselfEnds: nothing refuses a transfer whose target is its
// source; it must end like any other (credited and completed, or refused
// and refunded), each leg once, with the account's money unchanged.
func TestTransferToItselfEnds(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	startSaga(t, h, "s0")
	openAccounts(t, h, 100, false)
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"self","to":"ann","amount":30}`))
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"self2","to":"ann","amount":70}`))
	waitMoney(t, h, 100, func(a map[string]account.Account) bool { return a["ann"].Balance == 100 })
	if c, r := transferEvents(t, h); c+r != 2 {
		t.Fatalf("%d completed and %d refunded transfers, want 2 ended", c, r)
	}
}

// TestTransferWithHugeIDsBlocksNothing: the processor accepts a debit whose
// target id and transfer id are hundreds of KB (the command is under its
// 900 KB limit); the legs the saga derives from it (keyed by the target,
// carrying the transfer id and the source) may not fit a record. The saga
// must not stop on it: a later transfer still completes.
func TestTransferWithHugeIDsBlocksNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	startSaga(t, h, "s0")
	openAccounts(t, h, 100, false)
	big := strings.Repeat("t", 300<<10)
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"`+big+`","to":"`+big+`","amount":30}`))
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"small","to":"bob","amount":10}`))
	deadline := time.Now().Add(60 * time.Second)
	for {
		a := accounts(t, h)
		if a["bob"].Balance == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the later transfer never completed: bob %+v, ann balance %d, %d pending", a["bob"], a["ann"].Balance, len(a["ann"].Pending))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTransferFromALongAccountIDCompletes: an account id of 2,000 bytes
// is accepted by the processor, so transfers from it must end: the legs'
// command ids name the source, and one over the processor's
// MaxCommandIDBytes (1,024) was refused (INVALID bad_header), the credit
// re-sent forever and the money held pending.
func TestTransferFromALongAccountIDCompletes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	startSaga(t, h, "s0")
	openAccounts(t, h, 1, false)
	long := strings.Repeat("q", 2000)
	accepted(t, send(t, h, long, "OpenAccount", `{"owner":"Q","currency":"EUR"}`))
	accepted(t, send(t, h, long, "Deposit", `{"amount":50}`))
	accepted(t, send(t, h, long, "DebitForTransfer", `{"transferId":"t1","to":"bob","amount":20}`))
	waitMoney(t, h, 51, func(a map[string]account.Account) bool { return a["bob"].Balance == 20 && a[long].Balance == 30 })
}
