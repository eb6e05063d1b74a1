package bench

import (
	"reflect"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/schemas"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 1000; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500}, {0.99, 990}, {0.999, 999}, {1, 1000}, {0, 1}} {
		if got := percentile(d, c.q); got != c.want {
			t.Errorf("percentile(%v) = %d, want %d", c.q, got, c.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing")
	}
}

func TestGokaStateCodecRoundTrip(t *testing.T) {
	set, err := schemas.LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	c, err := set.Codec("Account")
	if err != nil {
		t.Fatal(err)
	}
	sc := stateCodec{c}
	in := &gokaState{version: 300, state: account.Evolve(account.Account{}, account.AccountOpened{Owner: "O", Currency: "EUR"})}
	b, err := sc.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := sc.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.(*gokaState); got.version != 300 || !reflect.DeepEqual(got.state, in.state) {
		t.Fatalf("round trip gave %+v, want %+v", got, in)
	}
	if _, err := sc.Decode(nil); err == nil {
		t.Fatal("empty state decoded")
	}
}
