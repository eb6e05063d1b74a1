package saga

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kcqrs/kcqrs/internal/examples"
)

func TestRefRoundTripAndCommandIDs(t *testing.T) {
	r := Ref{Source: "a/b:c", Version: 7, TransferID: "t", Target: "x", Amount: 5, Leg: LegCredit}
	got, err := DecodeRef(r.encode())
	if err != nil || got != r {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	ids := map[string]bool{}
	for _, ref := range []Ref{
		r,
		{Source: "a/b:c", Version: 7, Leg: LegRefund},
		{Source: "a/b:c", Version: 7, Leg: LegComplete},
		{Source: "a/b:c", Version: 8, Leg: LegCredit},
		{Source: "a/b", Version: 7, Leg: LegCredit},
		{Source: `a/b:c":7`, Version: 7, Leg: LegCredit},
	} {
		if ids[ref.CommandID()] {
			t.Fatalf("command id %q made twice", ref.CommandID())
		}
		ids[ref.CommandID()] = true
	}
	if r.CommandID() != (Ref{Source: "a/b:c", Version: 7, Leg: LegCredit, Amount: 99}).CommandID() {
		t.Fatal("the command id depends on more than the debit event and the leg")
	}
	for _, bad := range []string{"", "{}", "null", `{"source":"a","version":1,"transferId":"t","target":"b","amount":1,"leg":"steal"}`,
		`{"source":"a","version":0,"transferId":"t","target":"b","amount":1,"leg":"credit"}`,
		`{"source":"a","version":1,"transferId":"t","target":"b","amount":-1,"leg":"credit"}`} {
		if _, err := DecodeRef([]byte(bad)); err == nil {
			t.Errorf("DecodeRef(%q) accepted", bad)
		}
	}
}

// FuzzDecodeRef: the correlation id of a reply is untrusted input to the
// saga. It must never panic, and what it accepts must be a valid reference
// that survives a round trip.
func FuzzDecodeRef(f *testing.F) {
	f.Add([]byte(`{"source":"a","version":1,"transferId":"t","target":"b","amount":1,"leg":"credit"}`))
	f.Add([]byte(`{"source":"a","version":9223372036854775807,"transferId":"t","target":"b","amount":1,"leg":"refund"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRef(data)
		if err != nil {
			return
		}
		again, err := DecodeRef(r.encode())
		if len(strconv.Quote(r.Source)) > maxQuotedSource {
			r.Source = sourceDigest(r.Source) // named by its digest
		}
		if err != nil || again != r {
			t.Fatalf("accepted %+v does not round trip: %+v %v", r, again, err)
		}
	})
}

// A session timeout at or above the transaction timeout is refused: a
// commit held while a rebalance waits for a dead member would outlive its
// transaction.
func TestConfigRejectsSessionTimeoutAboveTransactionTimeout(t *testing.T) {
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	base := Config{Brokers: []string{"127.0.0.1:1"}, InstanceID: "w0"}
	if _, err := New(base, reg); err == nil || !strings.Contains(err.Error(), "no signing key") {
		t.Fatalf("got %v without a signing key, want an error naming it", err)
	}
	base.SigningKey = []byte("k")
	if _, err := New(base, reg); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	bad := base
	bad.SessionTimeout, bad.TransactionTimeout = 10*time.Second, 10*time.Second
	if _, err := New(bad, reg); err == nil || !strings.Contains(err.Error(), "session timeout") {
		t.Fatalf("got %v, want a session timeout error", err)
	}
}

func TestCollector(t *testing.T) {
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Brokers: []string{"127.0.0.1:1"}, InstanceID: "x", SigningKey: []byte("k")}, reg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	s.pending[pendingKey{"a", 1, "t"}] = &pendingTransfer{since: now.Add(-90 * time.Second)}
	s.stats.Redriven = 2
	p := prometheus.NewPedanticRegistry()
	if err := p.Register(s.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := p.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	for name, want := range map[string]float64{
		"kcqrs_saga_pending_transfers":               1,
		"kcqrs_saga_oldest_pending_transfer_seconds": 90,
		"kcqrs_saga_redriven_total":                  2,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}
