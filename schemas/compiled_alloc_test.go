//go:build !race

package schemas

import "testing"

// TestCompiledAllocationBudget pins the allocations of the compiled path
// (counts, not times): Encode allocates only the output buffer; Decode only
// what the value keeps (a string, a slice each). A regression to a path
// through goavro's native form costs several per field.
func TestCompiledAllocationBudget(t *testing.T) {
	all := allSets(t)
	acc := account{Status: "open", Owner: "Ada Lovelace", Currency: "EUR", Balance: 12_345,
		Pending:  []pendingTransfer{{TransferID: "t-1", To: "acc-2", Amount: 500}},
		Credited: []creditMark{{From: "acc-3", DebitVersion: 7}}}
	for _, tc := range []struct {
		record string
		value  any
		target any
		// decode: the three strings of the account, its two slices, and
		// the three strings in their items.
		encAllocs, decAllocs float64
	}{
		{"Account", acc, new(account), 1, 8},
		{"Deposit", deposit{Amount: 250}, new(deposit), 1, 0},
		{"MoneyDeposited", moneyDeposited{Amount: 250, Balance: 9}, new(moneyDeposited), 1, 0},
		{"TransferCredited", transferCredited{TransferID: "t", From: "a", DebitVersion: 1, Amount: 2, Balance: 3}, new(transferCredited), 1, 2},
	} {
		c := mustCodec(t, all, tc.record)
		data, err := c.Encode(tc.value)
		if err != nil {
			t.Fatal(err)
		}
		if got := testing.AllocsPerRun(100, func() { _, _ = c.Encode(tc.value) }); got > tc.encAllocs {
			t.Errorf("%s: Encode allocates %v times, budget %v", tc.record, got, tc.encAllocs)
		}
		if got := testing.AllocsPerRun(100, func() { _ = c.Decode(data, tc.target) }); got > tc.decAllocs {
			t.Errorf("%s: Decode allocates %v times, budget %v", tc.record, got, tc.decAllocs)
		}
	}
}
