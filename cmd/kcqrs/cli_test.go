package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/internal/examples/examplestest"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// startWorkers starts a broker, a processor and (with transfers) the
// transfer saga, and points KCQRS_BROKERS at the broker: the commands under
// test get their connection from the environment, as the processor does.
func startWorkers(t *testing.T, transfers bool) *topologytest.Harness {
	t.Helper()
	h := examplestest.Harness(t, 2)
	h.Base.InternalCommands, h.Base.CommandSigningKey = saga.InternalCommands(), []byte("cli-test-key")
	h.StartProcessor("w0", "")
	h.Client() // the topics exist
	t.Setenv("KCQRS_BROKERS", strings.Join(h.Brokers, ","))
	if transfers {
		sg, err := saga.New(saga.Config{Brokers: h.Brokers, InstanceID: "w0", SigningKey: h.Base.CommandSigningKey, Logger: h.Base.Logger}, h.Registry)
		if err != nil {
			t.Fatal(err)
		}
		topologytest.RunUntilEnd(t, "saga", sg.Run)
	}
	return h
}

// run runs a kcqrs command in-process and returns its output, exit code and
// the JSON object it printed (nil if none).
func run(t *testing.T, fn func([]string) error, args ...string) (string, int, map[string]any) {
	t.Helper()
	out, err := capture(t, func() error { return fn(args) })
	var obj map[string]any
	_ = json.Unmarshal([]byte(out), &obj)
	return out, exitCode(err), obj
}

// TestSendExitCodesAndWireNames: send exits with its status's code and
// prints the reply with the wire's field names; stray arguments are an
// error, not ignored.
func TestSendExitCodesAndWireNames(t *testing.T) {
	startWorkers(t, false)
	for _, c := range []struct {
		args   []string
		code   int
		status wire.Status
		reason string
	}{
		{[]string{"--id", "cx", "--type", "Deposit", "--data", `{"amount":5}`}, exitRejected, wire.StatusRejected, "not_open"},
		{[]string{"--id", "cx", "--type", "OpenAccount", "--data", `{"owner":"A","currency":"EUR"}`}, exitOK, wire.StatusAccepted, ""},
		{[]string{"--id", "cx", "--type", "Deposit", "--data", `{"amount":5}`, "--expected-version", "7"}, exitConflict, wire.StatusConflict, "version_conflict"},
		{[]string{"--id", "cx", "--type", "Deposit", "--data", `{"amount":"5"}`}, exitInvalid, wire.StatusInvalid, "undecodable"},
		{[]string{"--id", "cx", "--type", "Teleport"}, exitInvalid, wire.StatusInvalid, "unknown_command_type"},
	} {
		out, code, obj := run(t, runSend, c.args...)
		if code != c.code || obj["status"] != string(c.status) || obj["code"] != c.reason || obj["commandId"] == nil || obj["aggregateId"] != "cx" {
			t.Errorf("send %v: exit %d, printed %s; want exit %d, status %s, code %q with the wire names", c.args, code, out, c.code, c.status, c.reason)
		}
		if _, goNames := obj["CommandID"]; goNames {
			t.Errorf("send %v printed Go field names: %s", c.args, out)
		}
	}
	if _, code, _ := run(t, runSend, "--id", "cx", "--type", "Deposit", "oops"); code != exitUsage {
		t.Errorf("send with a stray argument: exit %d, want %d", code, exitUsage)
	}
	if _, code, _ := run(t, runTransfer, "--from", "a", "--to", "b", "--amount", "1", "--wait", "oops"); code != exitUsage {
		t.Errorf("transfer with a stray argument: exit %d, want %d", code, exitUsage)
	}
}

// TestTransferWaitReportsTheOutcome: a transfer to a missing account is
// accepted (the debit) and then refunded by the saga; --wait says so and
// exits 9. A transfer between open accounts completes (exit 0). A debit the
// source refuses exits with REJECTED's code. Ids with quotes and control
// characters travel as valid JSON.
func TestTransferWaitReportsTheOutcome(t *testing.T) {
	startWorkers(t, true)
	for _, id := range []string{"src", "dst"} {
		if out, code, _ := run(t, runSend, "--id", id, "--type", "OpenAccount", "--data", `{"owner":"A","currency":"EUR"}`); code != exitOK {
			t.Fatalf("open %s: exit %d %s", id, code, out)
		}
	}
	if out, code, _ := run(t, runSend, "--id", "src", "--type", "Deposit", "--data", `{"amount":100}`); code != exitOK {
		t.Fatalf("deposit: exit %d %s", code, out)
	}
	out, code, obj := run(t, runTransfer, "--from", "src", "--to", "nobody \"\x01", "--amount", "10", "--wait", "--transfer-id", "t-\"1\"\n")
	if code != exitRefunded || obj["outcome"] != outcomeRefunded || obj["transferId"] != "t-\"1\"\n" || obj["reason"] == "" {
		t.Fatalf("transfer to a missing account: exit %d, printed %s; want refunded (exit %d)", code, out, exitRefunded)
	}
	if r, _ := obj["reply"].(map[string]any); r["status"] != string(wire.StatusAccepted) {
		t.Fatalf("debit reply %v, want ACCEPTED", obj["reply"])
	}
	out, code, obj = run(t, runTransfer, "--from", "src", "--to", "dst", "--amount", "10", "--wait")
	if code != exitOK || obj["outcome"] != outcomeCompleted {
		t.Fatalf("transfer between open accounts: exit %d, printed %s; want completed", code, out)
	}
	out, code, obj = run(t, runTransfer, "--from", "src", "--to", "dst", "--amount", "1000", "--wait")
	if r, _ := obj["reply"].(map[string]any); code != exitRejected || r["code"] != "insufficient_funds" || obj["outcome"] != nil {
		t.Fatalf("overdrawing transfer: exit %d, printed %s; want REJECTED insufficient_funds", code, out)
	}
}
