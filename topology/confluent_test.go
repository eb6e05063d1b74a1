package topology_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestSchemaRegistryWireFormat: with Config.SchemaRegistryURLs set, events
// and snapshots are written in the Confluent wire format with the ids the
// (fake) registry gave their record subjects, read back by the registry, a
// restarted worker restores from them, and a command sent in that format is
// served.
func TestSchemaRegistryWireFormat(t *testing.T) {
	t.Parallel()
	fake := srfake.New()
	t.Cleanup(fake.Close)
	h := newHarness(t)
	useRegistry := func(c *topology.Config) { c.SchemaRegistryURLs = []string{fake.URL()} }
	p := h.StartProcessor("w0", "", useRegistry)

	wantStatus(t, h.Send(cmd("account", "r1", "OpenAccount", `{"owner":"Ann","currency":"EUR"}`)), wire.StatusAccepted, 1)
	// A producer using the registry's wire format for its commands.
	cl, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	acc, err := schemas.LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	dep, err := acc.Codec("Deposit")
	if err != nil {
		t.Fatal(err)
	}
	single, err := dep.Encode(account.Deposit{Amount: 40})
	if err != nil {
		t.Fatal(err)
	}
	conf, err := schemas.NewConfluent(cl, acc).FromSingleObject(context.Background(), single)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, h.Send(client.Command{AggregateType: "account", AggregateID: "r1", Type: "Deposit", Avro: conf}), wire.StatusAccepted, 2)

	for _, topic := range []struct{ name, subject string }{{"events", "kcqrs.Event"}, {"snapshots-changelog", "kcqrs.Snapshot"}} {
		ss, ok := fake.GetSchema(topic.subject, 1)
		if !ok {
			t.Fatalf("no subject %s in the registry", topic.subject)
		}
		recs := h.ReadTopic(topic.name)
		if len(recs) == 0 {
			t.Fatalf("%s is empty", topic.name)
		}
		for _, r := range recs {
			if !schemas.IsConfluent(r.Value) || !bytes.Equal(r.Value[1:5], []byte{byte(ss.ID >> 24), byte(ss.ID >> 16), byte(ss.ID >> 8), byte(ss.ID)}) {
				t.Fatalf("%s value % x does not start with 0 and the id %d of %s", topic.name, r.Value[:5], ss.ID, topic.subject)
			}
		}
	}
	versions, types := eventsOf(t, h)
	if got := types["account/r1"]; len(got) != 2 || got[1] != "MoneyDeposited" || versions["account/r1"][1] != 2 {
		t.Fatalf("events of r1: %v %v", got, versions)
	}
	_, states, _ := latestSnapshots(t, h)
	if got, ok := states["account/r1"].(account.Account); !ok || got.Status != account.StatusOpen || got.Owner != "Ann" || got.Currency != "EUR" || got.Balance != 40 || len(got.Pending) != 0 {
		t.Fatalf("snapshot of r1: %+v", states["account/r1"])
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	// A new worker with an empty store restores from the Confluent-framed
	// changelog and continues.
	h.StartProcessor("w1", "", useRegistry)
	wantStatus(t, h.Send(cmd("account", "r1", "Withdraw", `{"amount":15}`)), wire.StatusAccepted, 3)
}
