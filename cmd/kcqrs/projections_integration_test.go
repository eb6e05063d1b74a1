package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/projection"
)

// capture runs fn with os.Stdout redirected and returns what it printed.
func capture(t *testing.T, fn func() error) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	out := make(chan string)
	go func() { b, _ := io.ReadAll(r); out <- string(b) }()
	ferr := fn()
	os.Stdout = old
	w.Close()
	return <-out, ferr
}

// TestResetCommandRefusesWhileLive runs the CLI against a live projector:
// groups lists it, the dry run shows the plan and the refusal and changes
// nothing, --execute is refused.
func TestResetCommandRefusesWhileLive(t *testing.T) {
	c, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := strings.Join(c.ListenAddrs(), ",")
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	// Not an event: dead-lettered, but it moves the group's offset.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "events", Key: []byte("k"), Value: []byte("junk")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	svc, err := projection.StartService(ctx, projection.ServiceConfig{Project: true, NoHTTP: true,
		Projection: projection.Config{Brokers: c.ListenAddrs(), StateDir: dir, Registry: reg,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = svc.Wait() }()
	names := projection.Names{Prefix: "kcqrs-proj", Version: 1}
	deadline := time.Now().Add(60 * time.Second)
	for {
		pr, err := projection.GroupProgress(ctx, adm, string(names.AccountsGroup()), "events")
		if err == nil && projection.CheckNotLive(ctx, adm, names) != nil {
			var done int64
			for _, p := range pr {
				done += p.Position() - p.Start
			}
			if done == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("projector did not commit its first record in 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	out, err := capture(t, func() error { return runGroups([]string{"--brokers", brokers, "--prefix", "kcqrs-proj"}) })
	if err != nil || !strings.Contains(out, "kcqrs-proj-accounts-v1") {
		t.Fatalf("groups: %v\n%s", err, out)
	}
	out, err = capture(t, func() error {
		return runReset([]string{"--brokers", brokers, "--to", "earliest", "--state-dir", dir})
	})
	if err != nil || !strings.Contains(out, "REFUSED") || !strings.Contains(out, "dry run: nothing changed") ||
		!strings.Contains(out, "delete topic kcqrs-proj-accounts-v1-table") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	_, err = capture(t, func() error {
		return runReset([]string{"--brokers", brokers, "--to", "earliest", "--state-dir", dir, "--execute"})
	})
	var live *projection.LiveGroupError
	var liveInst *projection.LiveInstanceError
	if !errors.As(err, &live) && !errors.As(err, &liveInst) {
		t.Fatalf("execute while live: %v, want *projection.LiveGroupError or *projection.LiveInstanceError", err)
	}
	pr, err := projection.GroupProgress(ctx, adm, string(names.AccountsGroup()), "events")
	if err != nil {
		t.Fatal(err)
	}
	var done int64
	for _, p := range pr {
		done += p.Position() - p.Start
	}
	if done != 1 {
		t.Fatalf("offsets moved by a refused reset: %+v", pr)
	}
	if m, _ := os.ReadDir(dir + "/processor"); len(m) == 0 {
		t.Fatal("local state removed by a refused reset")
	}
	// A version that never existed: said so, no deletion plan.
	out, err = capture(t, func() error {
		return runReset([]string{"--brokers", brokers, "--to", "earliest", "--version", "9"})
	})
	if !errors.Is(err, projection.ErrNoSuchVersion) || !strings.Contains(out, "never existed") || strings.Contains(out, "delete topic") {
		t.Fatalf("reset of version 9: %v\n%s", err, out)
	}
}
