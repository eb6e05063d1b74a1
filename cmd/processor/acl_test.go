package main

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/binarytest"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
)

// processorAndSagaPermissions are the documented permissions of worker w0
// with its transfer saga (the default).
func processorAndSagaPermissions() []topology.Permission {
	p := topology.ProcessorPermissions(topology.Config{InstanceID: "w0"})
	return append(p, topology.SagaPermissions(topology.SagaNames{Events: "events", Commands: "commands", State: "kcqrs-transfers-state", Group: "kcqrs-transfers", InstanceID: "w0"})...)
}

// securedRun starts a broker with SASL and ACLs where the user "worker" has
// exactly perms, and runs the processor binary as that user until the test
// ends. It returns the admin's client options and the run's result.
func securedRun(t *testing.T, perms []topology.Permission) (brokers []string, admin config.Kafka, done <-chan error) {
	t.Helper()
	c := binarytest.Embedded(t, embedded.Options{Extra: []kfake.Opt{kfake.EnableSASL(),
		kfake.Superuser(config.SASLScramSHA256, "admin", "admin-secret"),
		kfake.User(config.SASLScramSHA256, "worker", "worker-secret", topologytest.ACLs(perms)...),
		kfake.EnableACLs()}})
	brokers = c.ListenAddrs()
	st, _, err := load([]string{"--brokers", strings.Join(brokers, ","), "--state-dir", t.TempDir(), "--instance-id", "w0",
		"--partitions", "2", "--http-addr", "127.0.0.1:0"},
		env("KCQRS_SASL_MECHANISM", config.SASLScramSHA256, "KCQRS_SASL_USER", "worker", "KCQRS_SASL_PASSWORD", "worker-secret", "KCQRS_TRANSFER_SIGNING_KEY", "legs-secret"), false)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	ended := make(chan struct{})
	go func() { err := run(ctx, st, reg, io.Discard, nil); close(ended); ch <- err }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ended:
		case <-time.After(60 * time.Second):
			t.Error("processor did not stop in 60s")
		}
	})
	admin = config.Kafka{Brokers: brokers, SASLMechanism: config.SASLScramSHA256, SASLUser: "admin", SASLPassword: "admin-secret"}
	return brokers, admin, ch
}

// TestProcessorWithExactlyItsACLs: the processor binary (worker and transfer
// saga) given exactly the documented permissions handles commands and
// completes a transfer (debit, credit, completion).
func TestProcessorWithExactlyItsACLs(t *testing.T) {
	t.Parallel()
	brokers, admin, done := securedRun(t, processorAndSagaPermissions())
	opts, err := admin.Opts()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cl, err := topologytest.WaitClient(ctx, client.Config{Brokers: brokers, ClientOpts: opts[1:]})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := topologytest.StartTransfer(ctx, cl); err != nil {
		t.Fatal(err)
	}
	for {
		types, err := topologytest.EventTypes(ctx, brokers, "events", opts[1:]...)
		if err != nil {
			t.Fatal(err)
		}
		if types["TransferCredited"] && types["TransferCompleted"] {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("processor stopped: %v", err)
		case <-ctx.Done():
			t.Fatalf("the transfer did not complete; event types: %v", types)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestSagaWithoutOneACL: without any one of the saga's permissions the
// processor binary stops, naming it, instead of debiting transfers that
// never end.
func TestSagaWithoutOneACL(t *testing.T) {
	t.Parallel()
	all := processorAndSagaPermissions()
	first := len(topology.ProcessorPermissions(topology.Config{InstanceID: "w0"}))
	for i := first; i < len(all); i++ {
		p := all[i]
		if dup := slices.IndexFunc(all[:first], func(q topology.Permission) bool {
			return q.Operation == p.Operation && q.ResourceType == p.ResourceType && q.Resource == p.Resource
		}); dup >= 0 {
			continue // the worker needs it too (Read on events): its own test removes it
		}
		t.Run(p.Operation.String()+" "+p.ResourceType.String()+" "+p.Resource, func(t *testing.T) {
			t.Parallel()
			_, _, done := securedRun(t, topologytest.Without(all, i))
			var err error
			select {
			case err = <-done:
			case <-time.After(90 * time.Second):
				t.Fatal("still running after 90s without " + p.String())
			}
			var pe *topology.PermissionError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), p.String()) {
				t.Fatalf("run: %v\nwant a PermissionError naming %s", err, p)
			}
		})
	}
}
