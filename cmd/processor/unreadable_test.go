package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/binarytest"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestUnreadablePartitionOnReadyz: a worker whose partition holds a
// snapshot it cannot read (written with a schema nobody knows) answers
// /readyz 503 naming the partition, the aggregate and the fingerprint,
// exports kcqrs_partition_unreadable with the fingerprint, and keeps
// answering commands of its other partitions.
func TestUnreadablePartitionOnReadyz(t *testing.T) {
	t.Parallel()
	c := binarytest.Embedded(t, embedded.Options{})
	const parts = 4
	id := "unreadable-1"
	part := topology.PartitionFor([]byte(id), parts)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	compact := "compact"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, parts, 1, map[string]*string{"cleanup.policy": &compact}, "snapshots-changelog"); err != nil {
		t.Fatal(err)
	}
	garbled := append([]byte{0xC3, 0x01, 7, 7, 7, 7, 7, 7, 7, 7}, 1, 2, 3)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "snapshots-changelog", Partition: part, Key: []byte("account/" + id), Value: garbled}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	st, _, err := load([]string{"--brokers", strings.Join(c.ListenAddrs(), ","), "--state-dir", t.TempDir(), "--instance-id", "u0",
		"--partitions", strconv.Itoa(parts), "--http-addr", "127.0.0.1:0", "--transfers=false"}, env(), false)
	if err != nil {
		t.Fatal(err)
	}
	worker := startWorker(t, st)
	base := worker.Base
	cli := dialClient(ctx, t, st.cfg.Brokers)
	go func() { // waits: its partition is held back
		_, _ = cli.Send(ctx, client.Command{AggregateType: "account", AggregateID: id, Type: "Deposit", JSON: []byte(`{"amount":1}`)})
	}()
	other := "readable-0"
	for i := 1; topology.PartitionFor([]byte(other), parts) == part; i++ {
		other = "readable-" + strconv.Itoa(i)
	}
	rep, err := cli.Send(ctx, client.Command{AggregateType: "account", AggregateID: other, Type: "OpenAccount", JSON: []byte(`{"owner":"O","currency":"EUR"}`)})
	if err != nil || rep.Status != wire.StatusAccepted {
		t.Fatalf("a command on another partition: %+v %v", rep, err)
	}
	want := []string{"partition " + strconv.Itoa(int(part)) + " (account/" + id, "0x0707070707070707"}
	metricWant := `kcqrs_partition_unreadable{fingerprint="0x0707070707070707",partition="` + strconv.Itoa(int(part)) + `"} 1`
	for {
		code, body := scrape(t, base+"/readyz")
		_, metrics := scrape(t, base+"/metrics")
		if code == 503 && strings.Contains(body, want[0]) && strings.Contains(body, want[1]) && strings.Contains(metrics, metricWant) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("/readyz %d %q; metrics have %q: %v", code, body, metricWant, strings.Contains(metrics, metricWant))
		case <-worker.Done():
			t.Fatalf("the worker stopped: %v", worker.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
