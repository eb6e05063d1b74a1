package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
)

// envKafka reads the connection settings of an env file the broker wrote,
// through the same binding the binaries use.
func envKafka(t *testing.T, file, prefix string) config.Kafka {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	var k config.Kafka
	s := config.New("test", prefix)
	k.Bind(s, nil)
	if err := s.Parse(nil, func(n string) (string, bool) { v, ok := vars[n]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSecureBroker: `kcqrs broker --secure` (mutual TLS with a generated CA,
// SCRAM-SHA-256, ACLs) runs the demo's processor and transfer saga as user
// kcqrs-processor and its commands as kcqrs-cli, each with exactly its
// documented permissions, from the env files it writes; a wrong password
// is refused.
func TestSecureBroker(t *testing.T) {
	t.Parallel()
	bc := &brokerConfig{port: 9092, dataDir: t.TempDir(), compaction: time.Second, secure: true}
	if err := bc.validate(); err != nil {
		t.Fatal(err)
	}
	bc.port = 0 // a free port
	c, files, err := startBroker(bc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if len(files) != len(brokerUsers) {
		t.Fatalf("env files: %v", files)
	}
	proc := envKafka(t, filepath.Join(bc.dataDir, "kcqrs-processor.env"), config.DefaultPrefix)
	cli := envKafka(t, filepath.Join(bc.dataDir, "kcqrs-cli.env"), config.DefaultPrefix)
	admin := envKafka(t, filepath.Join(bc.dataDir, "admin.env"), config.DefaultPrefix)
	projector := envKafka(t, filepath.Join(bc.dataDir, "kcqrs-projector.env"), config.DefaultPrefix+"PROJECTOR_")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for _, k := range []config.Kafka{proc, cli, admin, projector} {
		if k.TLSCertFile == "" || k.SASLMechanism != config.SASLScramSHA256 {
			t.Fatalf("env file settings: %+v", k)
		}
		if err := k.Check(ctx, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	wrong := cli
	wrong.SASLPassword = "wrong"
	if err := wrong.Check(ctx, 20*time.Second); err == nil || !strings.Contains(err.Error(), `"kcqrs-cli"`) {
		t.Fatalf("wrong password: %v", err)
	}

	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	procOpts, err := proc.Opts()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pcfg := topology.Config{Brokers: proc.Brokers, InstanceID: "demo-0", StateDir: t.TempDir(), Partitions: 4, Logger: log, ClientOpts: procOpts[1:]}
	pcfg.InternalCommands, pcfg.CommandSigningKey = saga.InternalCommands(), []byte("secure-test-key")
	p, err := topology.New(pcfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := saga.New(saga.Config{Brokers: proc.Brokers, InstanceID: "demo-0", SigningKey: []byte("secure-test-key"), Logger: log, ClientOpts: procOpts[1:]}, reg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- p.Run(rctx) }()
	go func() { done <- sg.Run(rctx) }()
	defer func() {
		rcancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}()

	cliOpts, err := cli.Opts()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := topologytest.WaitClient(ctx, client.Config{Brokers: cli.Brokers, ClientOpts: cliOpts[1:]})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := topologytest.StartTransfer(ctx, cl); err != nil {
		t.Fatal(err)
	}
	adminOpts, err := admin.Opts()
	if err != nil {
		t.Fatal(err)
	}
	for {
		types, err := topologytest.EventTypes(ctx, admin.Brokers, "events", adminOpts[1:]...)
		if err != nil {
			t.Fatal(err)
		}
		if types["TransferCompleted"] {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("processor or saga stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("the transfer did not complete")
		case <-time.After(200 * time.Millisecond):
		}
	}
}
