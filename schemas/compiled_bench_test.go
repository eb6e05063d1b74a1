package schemas

import (
	"reflect"
	"testing"
)

// BenchmarkDomainCodec compares, in one run, the goavro path (reflection to
// goavro's native form, then goavro; "generic") with the compiled codecs
// ("compiled") for the records a command touches: the account state, a
// command and an event. Compare ns/op and allocs/op pairwise.
func BenchmarkDomainCodec(b *testing.B) {
	all := allSets(b)
	cases := []struct {
		name, record string
		value        any
	}{
		{"state", "Account", account{Status: "open", Owner: "Ada Lovelace", Currency: "EUR", Balance: 12_345,
			Pending:  []pendingTransfer{{TransferID: "t-1", To: "acc-2", Amount: 500}},
			Credited: []creditMark{{From: "acc-3", DebitVersion: 7}}}},
		{"command", "Deposit", deposit{Amount: 250}},
		{"event", "MoneyDeposited", moneyDeposited{Amount: 250, Balance: 12_595}},
	}
	for _, bc := range cases {
		c := mustCodec(b, all, bc.record)
		data, err := c.encodeGeneric(bc.value)
		if err != nil {
			b.Fatal(err)
		}
		t := reflect.TypeOf(bc.value)
		encoders := []struct {
			path string
			enc  func(any) ([]byte, error)
			dec  func([]byte, any) error
		}{
			{"generic", c.encodeGeneric, c.decodeGeneric},
			{"compiled", c.Encode, c.Decode},
		}
		for _, e := range encoders {
			b.Run(bc.name+"/encode/"+e.path, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := e.enc(bc.value); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		for _, e := range encoders {
			b.Run(bc.name+"/decode/"+e.path, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					p := reflect.New(t).Interface()
					if err := e.dec(data, p); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
