package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/wire"
)

// SIGTERM ends the worker cleanly (exit 0: the open transaction ended, the
// stores closed, the group left), and the restarted worker restores no
// snapshot record: its stores were complete.
func TestSIGTERMLeavesNothingToRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the processor binary")
	}
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "processor")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	state := filepath.Join(dir, "state")

	run := func(n int) (stop func() string) {
		logPath := filepath.Join(dir, fmt.Sprintf("run%d.log", n))
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--brokers", brokers[0], "--instance-id", "t0", "--state-dir", state, "--partitions", "3", "--commit-interval", "20ms")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait(); logf.Close() }()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return func() string {
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run %d: exit after SIGTERM: %v", n, err)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("run %d: no exit within 60s of SIGTERM", n)
			}
			out, _ := os.ReadFile(logPath)
			if !strings.Contains(string(out), "processor stopped cleanly") {
				t.Fatalf("run %d did not stop cleanly:\n%s", n, out)
			}
			return string(out)
		}
	}
	send := func(cl *client.Client, id, typ, body string, version int64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		rep, err := cl.Send(ctx, client.Command{AggregateType: "account", AggregateID: id, Type: typ, JSON: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Status != wire.StatusAccepted || rep.Version != version {
			t.Fatalf("%s %s: %+v", typ, id, rep)
		}
	}
	newClient := func() *client.Client {
		deadline := time.Now().Add(60 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			cl, err := client.New(ctx, client.Config{Brokers: brokers})
			cancel()
			if err == nil {
				return cl
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	stop := run(1)
	cl := newClient()
	defer cl.Close()
	ids := []string{"a", "b", "c", "d", "e", "f"}
	for _, id := range ids {
		send(cl, id, "OpenAccount", `{"owner":"O","currency":"EUR"}`, 1)
		send(cl, id, "Deposit", `{"amount":5}`, 2)
	}
	stop()

	stop = run(2)
	for _, id := range ids {
		send(cl, id, "Deposit", `{"amount":1}`, 3)
	}
	log := stop()
	caughtUp := regexp.MustCompile(`msg="(store caught up|restore done)".* records=(\d+)`)
	matches := caughtUp.FindAllStringSubmatch(log, -1)
	if len(matches) == 0 {
		t.Fatalf("the restarted worker logged no catch-up:\n%s", log)
	}
	for _, m := range matches {
		if m[2] != "0" {
			t.Fatalf("the restarted worker restored %s records after a SIGTERM: %s\n%s", m[2], m[0], log)
		}
	}
}
