package topology_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// A record written to the schema topic after the real one, under the same
// fingerprint key but with another text (junk, a truncated schema, or a
// schema of another fingerprint), must not hide the real schema from an
// older build: the old build must still learn it and process the commands
// of the partition, not hold the partition back forever.
func TestSchemaTopicForgedRecordDoesNotShadowTheRealSchema(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	regOld, regNext := h.Registry, nextRegistry(t)
	dir := t.TempDir()
	unknown := idOn("shadowed", 0)

	h.Registry = regNext
	next := h.StartProcessor("w1", dir) // publishes its schemas
	wantStatus(t, h.Send(cmd("account", unknown, "OpenAccount", `{"owner":"Bob","currency":"EUR"}`)), wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("account", unknown, "Deposit", `{"amount":10}`)), wire.StatusAccepted, 2)
	if err := next.Stop(); err != nil {
		t.Fatal(err)
	}
	set, err := nextSet()
	if err != nil {
		t.Fatal(err)
	}
	nextState, _ := set.Codec("Account")
	nextDeposit, _ := set.Codec("MoneyDeposited")
	prod, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(h.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, h.ClientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	put := func(key string, value []byte) {
		t.Helper()
		if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: topology.DefaultSchemaTopic, Partition: 0,
			Key: []byte(key), Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Forged records under the keys of the real schemas, after them.
	for i, c := range []*schemas.Codec{nextState, nextDeposit} {
		key := fmt.Sprintf("%016x", c.Fingerprint())
		switch i {
		case 0:
			put(key, []byte(`{"type":"record","name":"not json`))
		case 1:
			other, _ := set.Codec("MoneyWithdrawn") // a valid schema of another fingerprint
			put(key, []byte(other.Source()))
		}
	}

	h.Registry = regOld
	old := h.StartProcessor("w1", dir)
	waitReply(t, "a command on data whose schemas are in the schema topic (behind forged records)",
		sendAsync(h, cmd("account", unknown, "Deposit", `{"amount":5}`), 90*time.Second), wire.StatusAccepted, 3)
	if us := old.Unreadable(); len(us) != 0 {
		t.Fatalf("still held back: %+v", us)
	}
}
