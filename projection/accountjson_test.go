package projection

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestEncodeAccountIsJSONMarshal(t *testing.T) {
	// A field added to Account must be added to encodeAccount too.
	if n := reflect.TypeOf(Account{}).NumField(); n != 9 {
		t.Fatalf("Account has %d fields; encodeAccount writes 9: update it", n)
	}
	strs := []string{"", "a", "acc-0001", "EUR", "open", "closed", `q"uote`, `back\slash`, "<tag>", "a&b",
		"ctl\x01", "tab\t", "new\nline", "é", "\u2028", "\xff\xfe", "owner/with/slash", "sp ace"}
	ints := []int64{0, 1, -1, 42, math.MaxInt64, math.MinInt64}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	pickI := func() int64 {
		if rng.IntN(2) == 0 {
			return ints[rng.IntN(len(ints))]
		}
		return rng.Int64() - math.MaxInt64/2
	}
	for i := 0; i < 20000; i++ {
		a := Account{ID: pick(strs), Owner: pick(strs), Currency: pick(strs), Status: pick(strs),
			Balance: pickI(), Version: pickI(), Gaps: pickI(), Skipped: pickI(), UpdatedMillis: pickI()}
		want, err := json.Marshal(&a)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeAccount(&a)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%+v:\n got %s (%v)\nwant %s", a, got, err, want)
		}
	}
}

func TestEncodeTotalIsJSONMarshal(t *testing.T) {
	// A field added to CurrencyTotal must be added to encodeTotal too.
	if n := reflect.TypeOf(CurrencyTotal{}).NumField(); n != 6 {
		t.Fatalf("CurrencyTotal has %d fields; encodeTotal writes 6: update it", n)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i, cur := range []string{"", "EUR", `q"uote`, "<x>", "é", "\xff", "ctl\x01"} {
		for j := 0; j < 200; j++ {
			tot := CurrencyTotal{Currency: cur, Partition: rng.Int32() - math.MaxInt32/2, Total: rng.Int64() - math.MaxInt64/2,
				Accounts: int64(rng.Uint64()), Open: int64(i - j), Seq: int64(j) * math.MaxInt64 / 200}
			want, err := json.Marshal(&tot)
			if err != nil {
				t.Fatal(err)
			}
			got, err := encodeTotal(&tot)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%+v:\n got %s (%v)\nwant %s", tot, got, err, want)
			}
		}
	}
}
