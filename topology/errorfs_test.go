package topology_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// errorFSChild names the environment of the child process of
// TestPebbleWriteFailureAfterCommitKillsAndRecovers.
const errorFSChild = "KCQRS_ERRORFS_CHILD"

// A Pebble write after a commit that fails for real, injected with Pebble's
// vfs/errorfs: the store's memtable fills and Pebble cannot create its next
// write-ahead log. Pebble v2 cannot go on from that (it panics and the
// process dies: measured, a NoSync write error is not returned to Apply at
// all), so the worker dies between its commit and its store write, in a
// child process. Restarted on the same state directory, it finds its store
// behind the changelog (the failed batch is missing), catches up from the
// store's checkpoint, and no version is repeated or lost.
func TestPebbleWriteFailureAfterCommitKillsAndRecovers(t *testing.T) {
	if os.Getenv(errorFSChild) != "" {
		runErrorFSChild(t)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	dir := t.TempDir()
	first := h.StartProcessor("w0", dir) // creates the topics
	openAccountID(t, h, "ef")
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}

	logPath := filepath.Join(t.TempDir(), "child.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	child := exec.Command(os.Args[0], "-test.run=^TestPebbleWriteFailureAfterCommitKillsAndRecovers$", "-test.count=1", "-test.v")
	child.Env = append(os.Environ(), errorFSChild+"=1", "KCQRS_ERRORFS_BROKERS="+strings.Join(h.Brokers, ","), "KCQRS_ERRORFS_DIR="+dir)
	child.Stdout, child.Stderr = logFile, logFile
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var once sync.Once
	go func() { _ = child.Wait(); once.Do(func() { close(exited) }) }()
	t.Cleanup(func() { _ = child.Process.Kill(); <-exited })

	// Deposits until the child dies of the failed store write.
	accepted := 0
	deadline := time.Now().Add(90 * time.Second)
	for done := false; !done; {
		select {
		case <-exited:
			done = true
			continue
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child never failed a store write after %d deposits", accepted)
		}
		rep, err := sendWithin(h, cmd("account", "ef", "Deposit", `{"amount":1}`), 10*time.Second)
		if err == nil {
			if rep.Status != wire.StatusAccepted {
				t.Fatalf("deposit answered %+v", rep)
			}
			accepted++
		}
	}
	out, _ := os.ReadFile(logPath)
	// Pebble panics with the injected error while rotating its log, in
	// the post-commit store write (the applier's, applier.go).
	if s := string(out); !strings.Contains(s, "errorfs.LabelledError") || !strings.Contains(s, "rotateWAL") || !strings.Contains(s, "(*applier).write") {
		t.Fatalf("the child ended without the injected store failure after a commit (%d deposits):\n%s", accepted, tail(s, 3000))
	}
	if accepted == 0 {
		t.Fatal("no deposit was answered before the failure")
	}

	again := h.StartProcessor("w0", dir) // the same store, on the real file system
	rep, err := sendWithin(h, cmd("account", "ef", "Deposit", `{"amount":1}`), 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != wire.StatusAccepted {
		t.Fatalf("deposit after the restart answered %+v", rep)
	}
	versions := wantContiguous(t, h)
	if got := versions["account/ef"]; int64(len(got)) != rep.Version {
		t.Fatalf("versions of ef %v, last reply at %d", got, rep.Version)
	}
	part := topology.PartitionFor([]byte("ef"), partitions)
	caughtUp := false
	for _, r := range again.Restores() {
		if r.Partition == part && r.Records > 0 {
			caughtUp = true
		}
	}
	if !caughtUp {
		t.Fatalf("the restarted worker did not catch its store up from the changelog: %+v", again.Restores())
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// runErrorFSChild runs the worker whose stores refuse every write-ahead
// log after their first (one is created when a store opens), with 64 KiB
// memtables, so that a store write after a few commits needs a new log and
// fails.
func runErrorFSChild(t *testing.T) {
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	created := map[string]bool{}
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.HasSuffix(op.Path, ".log") || (op.Kind != errorfs.OpCreate && op.Kind != errorfs.OpReuseForWrite) {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		d := filepath.Dir(op.Path)
		if !created[d] {
			created[d] = true
			return nil
		}
		return errorfs.ErrInjected
	}))
	cfg := topology.Config{
		Brokers: strings.Split(os.Getenv("KCQRS_ERRORFS_BROKERS"), ","), InstanceID: "w0",
		StateDir: os.Getenv("KCQRS_ERRORFS_DIR"), Partitions: partitions, CommitInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	topology.StoreFS(&cfg, fs, 64<<10)
	p, err := topology.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Fatalf("the worker ended without dying of its store: %v", p.Run(ctx))
}
