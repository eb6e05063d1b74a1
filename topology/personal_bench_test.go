package topology

import (
	"bytes"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/shred"
)

func accountRegistry(tb testing.TB, personal bool) (*Registry, *boundType) {
	tb.Helper()
	r, err := NewRegistry()
	if err != nil {
		tb.Fatal(err)
	}
	set, err := schemas.LoadAccount()
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.Register(account.Type, set); err != nil {
		tb.Fatal(err)
	}
	if personal {
		ring := shred.NewKeyring()
		k, _ := shred.NewDataKey()
		if err := ring.Put("account/acc-1", k); err != nil {
			tb.Fatal(err)
		}
		if err := r.EnablePersonal(ring); err != nil {
			tb.Fatal(err)
		}
	}
	return r, r.types["account"]
}

// benchCommandCodec is the codec work of one command on an account, as the
// processor does it: encode its event and its new snapshot (handle.go,
// commit), and decode a snapshot (a load from the store).
func benchCommandCodec(b *testing.B, personal bool) {
	r, bt := accountRegistry(b, personal)
	a := &aggState{key: "account/acc-1", id: "acc-1", bt: bt, version: 7,
		state: account.Account{Status: account.StatusOpen, Owner: "Bench Owner", Currency: "EUR", Balance: 1000}}
	ev := account.MoneyDeposited{Amount: 100, Balance: 1100}
	now := time.Now()
	snap, err := r.encodeSnapshotFresh(a)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.encodeEvent(a, 8, "cmd", now, ev); err != nil {
			b.Fatal(err)
		}
		if _, err := r.encodeSnapshotFresh(a); err != nil {
			b.Fatal(err)
		}
		if _, err := r.decodeSnapshot(a.key, snap); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommandCodecPlain and BenchmarkCommandCodecPersonal are the pair
// of issue 17's speed check at the codec level: the same account, with the
// owner sealed (personal) or not.
func BenchmarkCommandCodecPlain(b *testing.B)    { benchCommandCodec(b, false) }
func BenchmarkCommandCodecPersonal(b *testing.B) { benchCommandCodec(b, true) }

// TestPersonalStateRoundTrip: a sealed snapshot decodes to the plain state,
// and its bytes do not hold the owner.
func TestPersonalStateRoundTrip(t *testing.T) {
	r, bt := accountRegistry(t, true)
	a := &aggState{key: "account/acc-1", id: "acc-1", bt: bt, version: 1,
		state: account.Account{Status: account.StatusOpen, Owner: "Owner-Canary-11", Currency: "EUR", Balance: 5}}
	snap, err := r.encodeSnapshotFresh(a)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(snap, []byte("Owner-Canary-11")) {
		t.Fatal("the snapshot holds the owner in clear")
	}
	got, err := r.decodeSnapshot(a.key, snap)
	if err != nil {
		t.Fatal(err)
	}
	if st := got.state.(account.Account); st.Owner != "Owner-Canary-11" || st.Balance != 5 {
		t.Fatalf("decoded %+v", st)
	}
	if a.state.(account.Account).Owner != "Owner-Canary-11" {
		t.Fatal("sealing changed the domain value")
	}
}
