package saga_test

import (
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/saga"
)

// A transfer whose target decided (credited, or refused) but whose
// completion or refund command was lost before the processor read it (here:
// deleted from the command topic) is re-driven with the leg it waits for,
// not with its credit (which the target refuses as decided already): it
// ends, and money is conserved.
func TestLostCompletionIsRedriven(t *testing.T) {
	t.Parallel()
	testLostEndIsRedriven(t, "bob", func(a map[string]account.Account) bool { return a["bob"].Balance == 50 })
}

func TestLostRefundIsRedriven(t *testing.T) {
	t.Parallel()
	testLostEndIsRedriven(t, "cid", func(a map[string]account.Account) bool { return len(a["cid"].Credited) > 0 })
}

func testLostEndIsRedriven(t *testing.T, target string, decided func(map[string]account.Account) bool) {
	h, dir := debitedWhileStopped(t, target, true)
	// The saga sends the credit while no processor runs, and stops.
	creditAndStop(t, h)
	// The target decides while no saga runs.
	proc := h.StartProcessor("w0", dir)
	waitFor(t, "the target's decision", func() bool { return decided(accounts(t, h)) })
	if err := proc.Stop(); err != nil {
		t.Fatal(err)
	}
	// The saga sends the completion or refund while no processor runs;
	// it is lost.
	next := startSagaWith(t, h, saga.Config{InstanceID: "s1", RedriveAfter: 2 * time.Second})
	waitFor(t, "the saga's completion or refund", func() bool { st := next.Stats(); return st.Completed+st.Refunded == 1 })
	loseCommandsOf(t, h, "ann")
	h.StartProcessor("w0", dir)
	accs := waitMoney(t, h, 100, func(a map[string]account.Account) bool { return len(a["ann"].Pending) == 0 })
	if st := next.Stats(); st.Redriven < 1 {
		t.Fatalf("stats %+v: ended without a re-drive", st)
	}
	wantC, wantR := 1, 0
	if target == "cid" {
		wantC, wantR = 0, 1
		if accs["ann"].Balance != 100 {
			t.Fatalf("ann holds %d after a refund, want 100", accs["ann"].Balance)
		}
	}
	if c, r := transferEvents(t, h); c != wantC || r != wantR {
		t.Fatalf("%d completed and %d refunded transfers, want %d and %d", c, r, wantC, wantR)
	}
}
