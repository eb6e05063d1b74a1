package topologytest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// TestExternalBrokers: with KCQRS_TEST_BROKERS set, a harness runs on that
// cluster with topics of its own (so tests can share it), and deletes them
// at the end. The "external" cluster here is an embedded broker started
// by the test.
func TestExternalBrokers(t *testing.T) {
	c, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("KCQRS_TEST_BROKERS", strings.Join(c.ListenAddrs(), ","))
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	var topics topology.Topics
	t.Run("suite", func(t *testing.T) {
		h := topologytest.New(t, reg, 2)
		if h.Cluster != nil || !strings.HasPrefix(h.Topics.Events, "kcqrs-test-") || h.Topic("events") != h.Topics.Events {
			t.Fatalf("not in external mode: cluster %v, topics %+v", h.Cluster, h.Topics)
		}
		topics = h.Topics
		h.StartProcessor("w0", "")
		rep := h.Send(client.Command{AggregateType: "account", AggregateID: "x1", Type: "OpenAccount", JSON: []byte(`{"owner":"X","currency":"EUR"}`)})
		if rep.Status != wire.StatusAccepted {
			t.Fatalf("reply %+v", rep)
		}
		if n := len(h.ReadTopic("events")); n != 1 {
			t.Fatalf("%d events in %s, want 1", n, h.Topics.Events)
		}
		t.Run("fault tests skip", func(t *testing.T) {
			topologytest.New(t, reg, 2).RequireEmbedded()
			t.Fatal("RequireEmbedded did not skip")
		})
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	for {
		listed, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, name := range listed.Names() {
			if name == topics.Commands || name == topics.Events || name == topics.Changelog || name == topics.Replies || name == topics.DeadLetters {
				left = append(left, name)
			}
		}
		if len(left) == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("test topics left behind: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
