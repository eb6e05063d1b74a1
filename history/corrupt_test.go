package history_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestCorruptIndexIsRebuilt: the index is derived from the events topic,
// so an index Pebble cannot open (a truncated manifest after a disk
// fault) is thrown away and rebuilt, not a processor that cannot start.
// One that another process holds open is never touched (TestSharedIndexDir).
func TestCorruptIndexIsRebuilt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.h.StartProcessor("p1", "")
	e.send(cmd("account", "c-1", "OpenAccount", `{"owner":"C","currency":"EUR"}`), wire.StatusAccepted)
	e.send(cmd("account", "c-1", "Deposit", `{"amount":3}`), wire.StatusAccepted)
	state := t.TempDir()
	dir := history.IndexDir(state, e.h.Topic("events"))
	idx, err := history.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := idx.Reset([16]byte{9}); err != nil {
		t.Fatal(err)
	}
	_ = idx.Close()
	m, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(m) == 0 {
		t.Fatal("no manifest")
	}
	for _, f := range m {
		if err := os.Truncate(f, 7); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := history.StartService(history.ServiceConfig{StateDir: state, Topic: e.h.Topic("events"), ClientOpts: e.clientOpts(), Registry: e.h.Registry})
	if err != nil {
		t.Fatalf("a corrupt index stopped the start: %v", err)
	}
	defer svc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		evs, err := svc.Reader().History(ctx, "account", "c-1", 1, 0)
		if err == nil && len(evs) == 2 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("history after the rebuild: %s, %v", describe(evs), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSharedIndexDir: a second service on the same state directory (two
// processors started with one --state-dir) fails to start with a clear
// error and leaves the first one's index alone.
func TestSharedIndexDir(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.h.StartProcessor("p1", "")
	e.send(cmd("account", "s-1", "OpenAccount", `{"owner":"S","currency":"EUR"}`), wire.StatusAccepted)
	state := t.TempDir()
	cfg := history.ServiceConfig{StateDir: state, Topic: e.h.Topic("events"), ClientOpts: e.clientOpts(), Registry: e.h.Registry}
	svc, err := history.StartService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitOne := func() {
		t.Helper()
		for {
			evs, err := svc.Reader().History(ctx, "account", "s-1", 1, 0)
			if err == nil && len(evs) == 1 {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("history: %s, %v", describe(evs), err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitOne()
	second, err := history.StartService(cfg)
	if err == nil {
		_ = second.Close()
		t.Fatal("a second service opened an index in use")
	}
	if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second service: %v; want an error saying the index is in use", err)
	}
	waitOne()
}
