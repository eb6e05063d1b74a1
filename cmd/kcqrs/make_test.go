package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMakeBrokerCtrlC: Ctrl-C (SIGINT to the terminal's whole process
// group) on `make broker` ends make with the program's clean exit, not with
// `make: *** Error 1` (as `go run` under make did).
func TestMakeBrokerCtrlC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the broker through make")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "broker")
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("KCQRS_BROKER_PORT=%d", 20000+rand.IntN(9000)),
		"KCQRS_BROKER_DATA_DIR="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out topologytest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(out.String(), "Ctrl-C to stop") {
		if ctx.Err() != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Fatalf("the broker did not start:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// What a terminal does on Ctrl-C: SIGINT to every process of the group.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// make itself got the SIGINT too: once its child exited cleanly it
	// re-raises it and dies of it (what a shell expects after Ctrl-C, and
	// silent). What it must not do is report the program as failed.
	err = cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGINT) {
		t.Fatalf("make broker after Ctrl-C: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "***") {
		t.Fatalf("make reported an error after Ctrl-C:\n%s", out.String())
	}
}

// TestMakeTestKeepsARedirectedLog: the gofmt step of `make test` lists the
// unformatted files without truncating a log its output is redirected to
// (`make test > log 2>&1`; `tee /dev/stderr` reopened the file with
// O_TRUNC and lost every line before it).
func TestMakeTestKeepsARedirectedLog(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	var recipe string
	for _, line := range strings.Split(string(mk), "\n") {
		if strings.Contains(line, "gofmt -l .") {
			recipe = strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(line, "\t"), "@"), "$$", "$")
		}
	}
	if recipe == "" {
		t.Fatal("no gofmt step in the Makefile")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.go"), []byte("package x\nfunc  f(){}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "log")
	cmd := exec.Command("sh", "-c", "exec >"+log+" 2>&1; echo first line; "+recipe)
	cmd.Dir = dir
	if err := cmd.Run(); err == nil {
		t.Fatal("the gofmt step passed on an unformatted file")
	}
	out, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "first line\n") || !strings.Contains(string(out), "bad.go") {
		t.Fatalf("log after the gofmt step:\n%s", out)
	}
}
