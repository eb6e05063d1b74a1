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

func TestUnmarshalAccountIsJSONUnmarshal(t *testing.T) {
	strs := []string{"", "a", "acc-0001", "EUR", "open", `q"uote`, `back\slash`, "<tag>", "ctl\x01", "é", "\xff"}
	ints := []int64{0, 1, -1, 42, math.MaxInt64, math.MinInt64}
	rng := rand.New(rand.NewPCG(5, 6))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	pickI := func() int64 {
		if rng.IntN(2) == 0 {
			return ints[rng.IntN(len(ints))]
		}
		return rng.Int64() - math.MaxInt64/2
	}
	check := func(data []byte) {
		t.Helper()
		var want, got Account
		wantErr := json.Unmarshal(data, &want)
		gotErr := unmarshalAccount(data, &got)
		if (wantErr == nil) != (gotErr == nil) || (wantErr == nil && got != want) {
			t.Fatalf("%q:\n got %+v (%v)\nwant %+v (%v)", data, got, gotErr, want, wantErr)
		}
	}
	for i := 0; i < 20000; i++ {
		a := Account{ID: pick(strs), Owner: pick(strs), Currency: pick(strs), Status: pick(strs),
			Balance: pickI(), Version: pickI(), Gaps: pickI(), Skipped: pickI(), UpdatedMillis: pickI()}
		data, err := encodeAccount(&a)
		if err != nil {
			t.Fatal(err)
		}
		check(data)
		// Mutations: every one must decode as encoding/json decodes it
		// (or fail as it fails).
		for j := 0; j < 4; j++ {
			m := bytes.Clone(data)
			switch k := rng.IntN(len(m)); rng.IntN(5) {
			case 0:
				m[k] = "0123456789-+.eE\"\\{}:, x\x00\xc3"[rng.IntN(25)]
			case 1:
				m = m[:k]
			case 2:
				m = append(m[:k:k], append([]byte(" "), m[k:]...)...)
			case 3:
				m = append(m, " \n"[rng.IntN(2)])
			case 4:
				m = append(m[:k:k], append([]byte("0"), m[k:]...)...)
			}
			check(m)
		}
	}
	for _, s := range []string{`{"id":"a","status":"open","balance":-0,"version":01,"updatedMillis":0}`,
		`{"id":"a","status":"open","balance":1e3,"version":1,"updatedMillis":0}`,
		`{"id":"a","status":"open","balance":1,"version":1,"updatedMillis":0,"id":"b"}`,
		`{"id":"a","status":"open","balance":99999999999999999999,"version":1,"updatedMillis":0}`,
		`null`, `{}`, ``} {
		check([]byte(s))
	}
}
