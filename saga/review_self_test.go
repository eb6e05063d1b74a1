package saga_test

import (
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/wire"
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

// TestTransferWithHugeIDsGetsAFinalAnswer: a debit whose target id and
// transfer id are hundreds of KB (the command is under the processor's
// 900 KB limit) was accepted, and the legs the saga derives from it (keyed
// by the target, carrying the transfer id and the source twice) could not
// be written: the money stayed pending forever, with no answer but
// ACCEPTED. It must be refused at once, with nothing moved; a later
// transfer completes.
func TestTransferWithHugeIDsGetsAFinalAnswer(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	startSaga(t, h, "s0")
	openAccounts(t, h, 100, false)
	big := strings.Repeat("t", 300<<10)
	for _, body := range []string{
		`{"transferId":"` + big + `","to":"` + big + `","amount":30}`,
		`{"transferId":"` + big + `","to":"bob","amount":30}`,
		`{"transferId":"t-huge-target","to":"` + big + `","amount":30}`,
	} {
		rep := send(t, h, "ann", "DebitForTransfer", body)
		if rep.Status != wire.StatusRejected || rep.Code != account.CodeInvalidTransfer || len(rep.Message) > 1024 {
			t.Fatalf("debit with a huge id: %s %s (%d-byte message), want REJECTED invalid_transfer", rep.Status, rep.Code, len(rep.Message))
		}
	}
	accepted(t, send(t, h, "ann", "DebitForTransfer", `{"transferId":"small","to":"bob","amount":10}`))
	waitMoney(t, h, 100, func(a map[string]account.Account) bool {
		return a["bob"].Balance == 10 && a["ann"].Balance == 90 && len(a["ann"].Pending) == 0
	})
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

// TestTransferFromAHugeAccountIDEnds: an account id is any Kafka key the
// processor takes, so an account of 460 KB can be opened and can debit.
// Its credit leg carried the source twice (in the value and in the
// correlation id): larger than a command may be, it was never sent, and
// the money stayed pending forever. And a target that took credits from a
// few such sources kept each id in its credit marks, until its snapshot no
// longer fit a record. The transfer must end: refused by the target
// (invalid_transfer, no mark) and refunded to the source.
func TestTransferFromAHugeAccountIDEnds(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	startSaga(t, h, "s0")
	openAccounts(t, h, 1, false)
	huge := strings.Repeat("h", 460<<10)
	accepted(t, send(t, h, huge, "OpenAccount", `{"owner":"H","currency":"EUR"}`))
	accepted(t, send(t, h, huge, "Deposit", `{"amount":50}`))
	accepted(t, send(t, h, huge, "DebitForTransfer", `{"transferId":"t1","to":"bob","amount":20}`))
	accs := waitMoney(t, h, 51, func(a map[string]account.Account) bool { return a[huge].Balance == 50 })
	if accs["bob"].Balance != 0 || len(accs["bob"].Credited) != 0 {
		t.Fatalf("bob %+v: want no credit and no mark of the huge source", accs["bob"])
	}
	if c, r := transferEvents(t, h); c != 0 || r != 1 {
		t.Fatalf("%d completed and %d refunded transfers, want 1 refunded", c, r)
	}
}
