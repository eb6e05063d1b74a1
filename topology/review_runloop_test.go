package topology_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

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
	prod := manualProducer(t, h)
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

// While a partition is held back by data this build cannot read, the
// worker checks the schema topic for the schemas it lacks. If that topic
// cannot be read (its leader is unavailable, say), the check must not stall
// the run loop: the other partitions' commands keep being answered.
func TestUnreachableSchemaTopicDoesNotStallOtherPartitions(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	regOld, regNext := h.Registry, nextRegistry(t)
	dir := t.TempDir()
	unknown := idOn("unreach", 0)
	fresh := idOn("reach", 2)

	h.Registry = regNext
	next := h.StartProcessor("w1", dir, func(c *topology.Config) { c.SchemaTopic = "-" })
	wantStatus(t, h.Send(cmd("account", unknown, "OpenAccount", `{"owner":"Bob","currency":"EUR"}`)), wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("account", unknown, "Deposit", `{"amount":10}`)), wire.StatusAccepted, 2)
	if err := next.Stop(); err != nil {
		t.Fatal(err)
	}

	h.Registry = regOld
	old := h.StartProcessor("w1", dir)
	wantStatus(t, h.Send(cmd("account", fresh, "OpenAccount", `{"owner":"Dee","currency":"EUR"}`)), wire.StatusAccepted, 1)
	// From now on the schema topic cannot be fetched.
	td, err := h.Admin().ListTopics(context.Background(), topology.DefaultSchemaTopic)
	if err != nil || td[topology.DefaultSchemaTopic].Err != nil {
		t.Fatalf("schema topic: %v %v", err, td)
	}
	fault := h.Cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: topology.DefaultSchemaTopic,
		TopicID: td[topology.DefaultSchemaTopic].ID, Err: kerr.NotLeaderForPartition, Count: -1})
	defer fault.Remove()
	blocked := sendAsync(h, cmd("account", unknown, "Deposit", `{"amount":5}`), 3*time.Minute)
	eventually(t, "the partition held back and checked again", func() bool {
		us := old.Unreadable()
		return len(us) == 1 && us[0].Attempts >= 2
	})
	// A schema-topic read is bounded by 30s; commands elsewhere are
	// answered in well under a second when nothing stalls the loop.
	for i := 0; i < 8; i++ {
		rep, err := sendWithin(h, cmd("account", fresh, "Deposit", `{"amount":1}`), 10*time.Second)
		if err != nil {
			t.Fatalf("deposit %d on a readable partition while the schema topic is unreachable: %v (unreadable: %+v)", i, err, old.Unreadable())
		}
		wantStatus(t, rep, wire.StatusAccepted, int64(i+2))
	}
	select {
	case s := <-blocked:
		t.Fatalf("the command on unreadable data was answered: %+v %v", s.rep, s.err)
	default:
	}
}

// Two workers started with the same instance id share a transactional id:
// the newer one fences the older, which must stop (a zombie never writes
// again) with an error that names the instance id and says what to fix,
// not a bare PRODUCER_FENCED.
func TestDuplicateInstanceIDIsReportedClearly(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w0 := h.StartProcessor("dup", "")
	ids := openPerPartition(t, h, "dup-a")
	w1 := h.StartProcessor("dup", "")
	deadline := time.Now().Add(60 * time.Second)
	for w0.Err() == nil && w1.Err() == nil && time.Now().Before(deadline) {
		for _, id := range ids {
			_, _ = sendWithin(h, cmd("account", id, "Deposit", `{"amount":1}`), 2*time.Second)
		}
	}
	err := w0.Err()
	if err == nil {
		err = w1.Err()
	}
	if err == nil {
		t.Fatal("two workers with the same instance id both still run after 60s")
	}
	if !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.TransactionCoordinatorFenced) {
		t.Fatalf("the fenced worker stopped with %v, want a fence", err)
	}
	for _, want := range []string{`instance id "dup"`, "another worker"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the fenced worker's error %q does not say %q", err, want)
		}
	}
}
