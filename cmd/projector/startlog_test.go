package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/binarytest"
	"github.com/kcqrs/kcqrs/topology/topologytest"
)

// TestStartLogNamesTheServedVersions: the start log says which versions
// the query API serves (its own by default), not versions=[].
func TestStartLogNamesTheServedVersions(t *testing.T) {
	c := binarytest.Embedded(t, embedded.Options{})
	// The projector waits for the events topic.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 2, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	st, _, err := load([]string{"--brokers", strings.Join(c.ListenAddrs(), ","), "--state-dir", t.TempDir(),
		"--http", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--log-format", "text"}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	var logs topologytest.SyncBuffer
	startProjectorLogging(t, st, &logs)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(logs.String(), "query API listening") {
		if time.Now().After(deadline) {
			t.Fatalf("no query API log line:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "query API listening") && !strings.Contains(line, "versions=[1]") {
			t.Fatalf("start log %q, want versions=[1]", line)
		}
	}
}
