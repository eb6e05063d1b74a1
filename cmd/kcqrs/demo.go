package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/console"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

func runDemo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	port := fs.Int("port", 9092, "broker port on 127.0.0.1")
	dir := fs.String("data-dir", ".kcqrs", "directory for the broker's data and the processor's state")
	exit := fs.Bool("exit", false, "exit after the workload instead of serving until Ctrl-C")
	verbose := fs.Bool("v", false, "show the processor's logs")
	httpAddr := fs.String("http", "127.0.0.1:8088", "listen address of the read-model query API")
	opsAddr := fs.String("ops-addr", "127.0.0.1:8080", "listen address of the processor's /metrics, /healthz, /readyz")
	consoleAddr := fs.String("console-addr", "127.0.0.1:8090", "listen address of the web console (read-only)")
	_ = fs.Parse(args)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cluster, err := embedded.Start(embedded.Options{Port: *port, DataDir: filepath.Join(*dir, "broker")})
	if err != nil {
		return err
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	fmt.Printf("embedded Kafka-protocol broker on %v (data in %s)\n", brokers, filepath.Join(*dir, "broker"))

	reg, err := examples.Registry()
	if err != nil {
		return err
	}
	var logOut io.Writer = io.Discard
	if *verbose {
		logOut = os.Stderr
	}
	endpoints := newDemoOps()
	// The history index of the events topic (docs/history.md): kcqrs
	// history and the /v1/ endpoints on --ops-addr read through it.
	mk := demoMasterKey() // personal data: the account owner is stored encrypted (demoerase.go)
	hist, err := history.StartService(history.ServiceConfig{StateDir: filepath.Join(*dir, "state"), ClientOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)},
		Registry: reg, Logger: slog.New(slog.NewTextHandler(logOut, nil)), Personal: mk})
	if err != nil {
		return err
	}
	defer hist.Close()
	proc, err := topology.New(topology.Config{
		History:    hist.Reader(),
		Personal:   mk,
		Observer:   endpoints.Observer(),
		Brokers:    brokers,
		InstanceID: "demo-0",
		StateDir:   filepath.Join(*dir, "state"),
		Partitions: 4,
		Logger:     slog.New(slog.NewTextHandler(logOut, nil)),
		// The saga's retired reply topic is internal (its legs are
		// answered on the default reply topic).
		InternalTopics: []string{saga.RetiredReplyTopic},
		// Only the saga below may send transfer legs (signed with the
		// demo's key: its broker authenticates nobody, see
		// docs/transfers.md).
		InternalCommands: saga.InternalCommands(), CommandSigningKey: demoSigningKey,
	}, reg)
	if err != nil {
		return err
	}
	srv, err := endpoints.start(*opsAddr, proc, slog.New(slog.NewTextHandler(logOut, nil)), hist.Handler())
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Printf("processor endpoints on http://%s: /metrics, /healthz, /readyz\n", srv.Addr())
	cons, err := startConsole(*consoleAddr, console.Options{ClientOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)},
		Processor: topology.Config{Partitions: 4}, Registry: reg, OpsAddrs: []string{srv.Addr().String()},
		Logger: slog.New(slog.NewTextHandler(logOut, nil))})
	if err != nil {
		return err
	}
	defer cons.Close()
	fmt.Printf("web console on http://%s (read-only)\n", cons.Addr())
	pctx, pcancel := context.WithCancel(ctx)
	procDone := make(chan error, 1)
	go func() { procDone <- proc.Run(pctx) }()
	defer func() {
		pcancel()
		if err := <-procDone; err != nil {
			fmt.Fprintln(os.Stderr, "processor:", err)
		}
	}()

	// The transfer saga, so that `kcqrs transfer` completes against the demo.
	tr, err := saga.New(saga.Config{Brokers: brokers, InstanceID: "demo-0", SigningKey: demoSigningKey, Logger: slog.New(slog.NewTextHandler(logOut, nil))}, reg)
	if err != nil {
		return err
	}
	sagaDone := make(chan error, 1)
	go func() { sagaDone <- tr.Run(pctx) }()
	defer func() {
		pcancel()
		if err := <-sagaDone; err != nil {
			fmt.Fprintln(os.Stderr, "transfer saga:", err)
		}
	}()

	cl, err := waitClient(ctx, brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	opener, personal, err := followDemoKeys(pctx, brokers, mk, slog.New(slog.NewTextHandler(logOut, nil)))
	if err != nil {
		return err
	}
	proj, err := startProjection(pctx, brokers, filepath.Join(*dir, "projector"), *httpAddr, logOut, opener, personal)
	if err != nil {
		return err
	}
	defer func() { pcancel(); _ = proj.Wait() }()

	run := strconv.FormatInt(time.Now().Unix()%(36*36*36*36*36), 36)
	acc := "acc-" + run
	fol := "folder-" + run
	retryID := client.NewID()
	steps := []struct {
		what string
		cmd  client.Command
	}{
		{"open an account", client.Command{AggregateType: "account", AggregateID: acc, Type: "OpenAccount", JSON: []byte(`{"owner":"Alice","currency":"EUR"}`), ExpectedVersion: wire.ExpectNoStream}},
		{"deposit 100.00", client.Command{AggregateType: "account", AggregateID: acc, Type: "Deposit", JSON: []byte(`{"amount":10000}`)}},
		{"withdraw 250.00 (overdraft)", client.Command{AggregateType: "account", AggregateID: acc, Type: "Withdraw", JSON: []byte(`{"amount":25000}`)}},
		{"deposit expecting version 1", client.Command{AggregateType: "account", AggregateID: acc, Type: "Deposit", JSON: []byte(`{"amount":500}`), ExpectedVersion: "1"}},
		{"withdraw 25.00", client.Command{AggregateType: "account", AggregateID: acc, Type: "Withdraw", ID: retryID, JSON: []byte(`{"amount":2500}`)}},
		{"same withdraw again (retry)", client.Command{AggregateType: "account", AggregateID: acc, Type: "Withdraw", ID: retryID, JSON: []byte(`{"amount":2500}`)}},
		{"malformed command (not Avro)", client.Command{AggregateType: "account", AggregateID: acc, Type: "Deposit", Avro: []byte("this is not avro")}},
		{"create a folder", client.Command{AggregateType: "folder", AggregateID: fol, Type: "CreateFolder", JSON: []byte(`{"name":"invoices"}`)}},
		{"delete the folder", client.Command{AggregateType: "folder", AggregateID: fol, Type: "DeleteFolder", JSON: []byte(`{}`)}},
		{"rename the deleted folder", client.Command{AggregateType: "folder", AggregateID: fol, Type: "RenameFolder", JSON: []byte(`{"name":"bills"}`)}},
	}
	fmt.Printf("\ndemo workload (account %s, folder %s):\n\n", acc, fol)
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tCOMMAND\tSTATUS\tVERSION\tDETAIL")
	var accVersion int64
	for _, s := range steps {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		rep, err := cl.Send(sctx, s.cmd)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
		if rep.AggregateID == acc && rep.Status == wire.StatusAccepted {
			accVersion = rep.Version
		}
		status := string(rep.Status)
		if rep.Duplicate {
			status += " (duplicate)"
		}
		detail := rep.Code
		if rep.Message != "" {
			detail += ": " + truncate(rep.Message, 70)
		}
		switch {
		case rep.Duplicate:
			detail = "original reply re-sent, nothing done twice"
		case rep.Status == wire.StatusAccepted:
			detail = fmt.Sprintf("%d event(s) written", rep.Events)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", s.what, s.cmd.Type, status, rep.Version, detail)
	}
	tw.Flush()

	// A reply is visible as soon as its transaction commits, a moment before
	// the processor counts it: wait for the counters to catch up.
	st := proc.Stats()
	for wait := time.Now().Add(3 * time.Second); st.Commands < int64(len(steps)) && time.Now().Before(wait); st = proc.Stats() {
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Printf("\nprocessor (this run): %d commands in %d transactions, %d events, %d snapshots, %d dead letters, %d duplicates\n",
		st.Commands, st.Transactions, st.Events, st.Snapshots, st.DeadLetters, st.Duplicates)
	printReadModel(ctx, proj, acc, accVersion)
	printHistory(ctx, hist.Reader(), srv.Addr().String(), acc)
	showErasure(ctx, cl, proj, brokers, mk, run)
	if *exit {
		return nil
	}
	fmt.Printf(`
serving on %s until Ctrl-C. Try, in another terminal:
  go run ./cmd/kcqrs send --id %s --type Deposit --data '{"amount": 4200}'
  go run ./cmd/kcqrs send --id %s --type Withdraw --data '{"amount": 1}' --expected-version 0
  curl 'http://%s/v1/accounts/%s?min_version=%d&wait=2s'
  KCQRS_MASTER_KEY=$(printf kcqrs-demo-master-key-32-bytes!! | base64) go run ./cmd/kcqrs erase account %s   # add --execute to erase
  curl http://%s/metrics
  go run ./cmd/kcqrs groups
  go run ./cmd/kcqrs history account %s --at-version 2
  open http://%s/aggregate?type=account&id=%s (the web console)
`, brokers[0], acc, acc, proj.Addr(), acc, accVersion+1, acc, srv.Addr(), acc, cons.Addr(), acc)
	select {
	case <-ctx.Done():
	case err := <-procDone:
		procDone <- err
	}
	return nil
}

// waitClient waits until the processor has created the topics.
func waitClient(ctx context.Context, brokers []string) (*client.Client, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cl, err := client.New(ctx, client.Config{Brokers: brokers})
		if err == nil {
			return cl, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, errors.Join(errors.New("processor did not create its topics in time"), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// demoSigningKey signs the demo saga's transfer legs. A constant: the demo's
// broker authenticates nobody (any client may write any topic), and a demo
// restarted on its data directory must still accept the legs it sent before.
var demoSigningKey = []byte("kcqrs-demo-transfer-signing-key")
