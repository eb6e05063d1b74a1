package topology_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// A worker SIGKILLed inside End leaves a transaction open that already
// holds an offset commit for the group. Restarted with the same instance id,
// it must abort that transaction before it needs its partitions' committed
// offsets: a stable offset fetch is refused while the transaction is open,
// and franz-go initializes the producer (which would abort it) only at the
// first produce, which needs those offsets first. Without fencing at start
// the partition waits for the broker's transaction timeout (here 10 minutes,
// far beyond the test's patience).
func TestRestartFencesItsOwnLeftoverTransaction(t *testing.T) {
	h := newHarness(t)
	long := func(c *topology.Config) { c.TransactionTimeout = 10 * time.Minute; c.StaticMembership = true }
	dir := t.TempDir()
	w0 := h.StartProcessor("w0", dir, long)
	openAccountID(t, h, "fence-a")
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	p := topology.PartitionFor([]byte("fence-a"), partitions)

	// The previous incarnation, killed inside End: its transaction holds a
	// changelog record and the group's offset commit for the partition.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	group := h.Base.Group
	if group == "" {
		group = topology.Defaults().Group
	}
	txnID := group + "-w0"
	ghost, err := kgo.NewClient(kgo.SeedBrokers(h.Brokers...), kgo.TransactionalID(txnID),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer ghost.Close()
	if err := ghost.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceJunk(ctx, t, h, ghost, p, "account/ghost")
	id, epoch, err := ghost.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txnID, id, epoch, group
	addResp, err := add.RequestWith(ctx, ghost)
	if err == nil {
		err = kerr.ErrorForCode(addResp.ErrorCode)
	}
	if err != nil {
		t.Fatalf("AddOffsetsToTxn: %v", err)
	}
	commit := kmsg.NewPtrTxnOffsetCommitRequest()
	commit.TransactionalID, commit.Group, commit.ProducerID, commit.ProducerEpoch, commit.Generation = txnID, group, id, epoch, -1
	ct := kmsg.NewTxnOffsetCommitRequestTopic()
	ct.Topic = h.Topic("commands")
	td, err := h.Admin().ListTopics(ctx, ct.Topic)
	if err != nil {
		t.Fatal(err)
	}
	ct.TopicID = td[ct.Topic].ID
	cp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	cp.Partition, cp.Offset = p, 1
	ct.Partitions = append(ct.Partitions, cp)
	commit.Topics = append(commit.Topics, ct)
	commitResp, err := commit.RequestWith(ctx, ghost)
	if err != nil {
		t.Fatalf("TxnOffsetCommit: %v", err)
	}
	for _, rt := range commitResp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("TxnOffsetCommit: %v", err)
			}
		}
	}

	if st := txnState(t, h.Admin(), txnID); st != "Ongoing" {
		t.Fatalf("the previous incarnation's transaction is %q before the restart, want Ongoing", st)
	}
	// The restart: the command on that partition is answered.
	h.StartProcessor("w0", dir, long)
	rep, err := sendWithin(h, cmd("account", "fence-a", "Deposit", `{"amount":5}`), 45*time.Second)
	if err != nil {
		t.Fatalf("a command on the restarted worker's partition got no reply while its previous transaction was open: %v", err)
	}
	wantStatus(t, rep, wire.StatusAccepted, 2)
}

// txnState is the broker's state of transactional id id.
func txnState(t *testing.T, adm *kadm.Client, id string) string {
	t.Helper()
	d, err := adm.DescribeTransactions(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d[id].State
}

// The liveness defaults hold together: a worker left dead blocks readers
// for the later of its session and its transaction timeout, so the
// transaction timeout stays just above the session timeout; members learn of
// a rebalance with their next heartbeat, at most a third of the session.
// Settings that break those relations are refused.
func TestLivenessTimeoutsDefaultsAndValidation(t *testing.T) {
	t.Parallel()
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	d := topology.Defaults()
	if d.SessionTimeout >= d.TransactionTimeout || d.TransactionTimeout-d.SessionTimeout > 2*time.Second || 3*d.HeartbeatInterval > d.SessionTimeout {
		t.Fatalf("defaults: session %v, transaction %v, heartbeat %v", d.SessionTimeout, d.TransactionTimeout, d.HeartbeatInterval)
	}
	base := topology.Config{Brokers: []string{"127.0.0.1:1"}, InstanceID: "w", StateDir: t.TempDir()}
	for _, tt := range []struct {
		name   string
		mutate func(*topology.Config)
		want   string
	}{
		{"session at the transaction timeout", func(c *topology.Config) { c.SessionTimeout = c.TransactionTimeout }, "must be below the transaction timeout"},
		{"heartbeat over a third of the session", func(c *topology.Config) { c.HeartbeatInterval = 3 * time.Second }, "heartbeat interval 3s must be positive and at most a third of the session timeout 8s"},
		{"negative heartbeat", func(c *topology.Config) { c.HeartbeatInterval = -time.Second }, "heartbeat interval -1s"},
	} {
		cfg := base
		cfg.TransactionTimeout, cfg.SessionTimeout = 9*time.Second, 8*time.Second
		tt.mutate(&cfg)
		_, err := topology.New(cfg, reg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}
