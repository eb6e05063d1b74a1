package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// A saga killed while its transaction held a leg on the commands topic
// leaves that partition's last stable offset stuck: the processor reads
// commands read_committed and answers nothing behind it. The restarted saga
// (same instance id) must abort it when it starts, not once it has joined
// its group (a join can take a rebalance timeout while the group waits for
// the dead member, seen as 3.3 s without replies in the crash-loop chaos
// run); else every command of that partition waits for the transaction
// timeout (here 10 minutes, beyond the test's patience). The broker here
// keeps the restarted saga out of its group.
func TestRestartedSagaFencesItsLeftoverTransaction(t *testing.T) {
	h := newHarness(t)
	h.RequireEmbedded()
	h.StartProcessor("w0", "")
	accepted(t, send(t, h, "fence-s", "OpenAccount", `{"owner":"O","currency":"USD"}`))
	p := topology.PartitionFor([]byte("fence-s"), partitions)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const group = "kcqrs-transfers" // the default
	txnID := group + "-s0"
	ghost, err := kgo.NewClient(kgo.SeedBrokers(h.Brokers...), kgo.TransactionalID(txnID),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer ghost.Close()
	if err := ghost.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := ghost.ProduceSync(ctx, &kgo.Record{Topic: h.Topic("commands"), Partition: p, Key: []byte("fence-s"), Value: []byte("leg")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	h.Cluster.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		h.Cluster.KeepControl()
		jr := req.(*kmsg.JoinGroupRequest)
		if jr.Group != group {
			return nil, nil, false
		}
		resp := jr.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp, nil, true
	})
	startSagaWith(t, h, saga.Config{InstanceID: "s0", TransactionTimeout: 10 * time.Minute})
	sctx, scancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer scancel()
	rep, err := h.Client().Send(sctx, client.Command{AggregateType: account.Name, AggregateID: "fence-s", Type: "Deposit", JSON: []byte(`{"amount":5}`)})
	if err != nil {
		t.Fatalf("a command behind the restarted saga's leftover transaction got no reply: %v", err)
	}
	if rep.Status != wire.StatusAccepted || rep.Version != 2 {
		t.Fatalf("reply %+v, want ACCEPTED at version 2", rep)
	}
}
