package main

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/internal/examples/examplestest"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestEraseDryRunThenExecute: `kcqrs erase account <id>` shows the key,
// snapshot and events it finds and sends nothing; --execute erases: the
// reply is ACCEPTED, later commands are REJECTED "erased", and a second plan
// says the key is erased already. Bad arguments are usage errors.
func TestEraseDryRunThenExecute(t *testing.T) {
	h := examplestest.Harness(t, 2)
	mk, err := shred.NewMasterKey(bytes.Repeat([]byte{3}, shred.KeyLen))
	if err != nil {
		t.Fatal(err)
	}
	h.StartProcessor("w0", "", func(c *topology.Config) { c.Personal = mk })
	t.Setenv(shred.MasterKeyEnv, hex.EncodeToString(bytes.Repeat([]byte{3}, shred.KeyLen)))
	t.Setenv("KCQRS_BROKERS", strings.Join(h.Brokers, ","))
	open := client.Command{AggregateType: "account", AggregateID: "gdpr-1", Type: "OpenAccount", JSON: []byte(`{"owner":"Erin","currency":"EUR"}`)}
	if rep := h.Send(open); rep.Status != wire.StatusAccepted {
		t.Fatalf("open: %+v", rep)
	}

	out, code, _ := run(t, runErase, "account", "gdpr-1")
	if code != exitOK || !strings.Contains(out, "data key        present") || !strings.Contains(out, "snapshot        present") ||
		!strings.Contains(out, "events          1") || !strings.Contains(out, "Dry run") {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	dep := client.Command{AggregateType: "account", AggregateID: "gdpr-1", Type: "Deposit", JSON: []byte(`{"amount":5}`)}
	if rep := h.Send(dep); rep.Status != wire.StatusAccepted {
		t.Fatalf("a dry run erased something: %+v", rep)
	}

	// Another master key: the processor refuses the token, nothing is erased.
	t.Setenv(shred.MasterKeyEnv, hex.EncodeToString(bytes.Repeat([]byte{4}, shred.KeyLen)))
	if out, code, _ := run(t, runErase, "account", "gdpr-1", "--execute"); code != exitInvalid || !strings.Contains(out, topology.CodeEraseRefused) {
		t.Fatalf("execute with another master key: exit %d\n%s", code, out)
	}
	if rep := h.Send(dep); rep.Status != wire.StatusAccepted {
		t.Fatalf("a refused erasure erased: %+v", rep)
	}
	t.Setenv(shred.MasterKeyEnv, hex.EncodeToString(bytes.Repeat([]byte{3}, shred.KeyLen)))
	out, code, _ = run(t, runErase, "account", "gdpr-1", "--execute")
	if code != exitOK || !strings.Contains(out, `"status": "ACCEPTED"`) {
		t.Fatalf("execute: exit %d\n%s", code, out)
	}
	if rep := h.Send(dep); rep.Status != wire.StatusRejected || rep.Code != topology.CodeErased {
		t.Fatalf("after erasure: %+v", rep)
	}
	out, code, _ = run(t, runErase, "account", "gdpr-1")
	if code != exitOK || !strings.Contains(out, "already erased") || !strings.Contains(out, "snapshot        present") {
		t.Fatalf("plan after erasure: exit %d\n%s", code, out)
	}
	// An account with an outgoing transfer in flight: the plan warns.
	for _, c := range []client.Command{
		{AggregateType: "account", AggregateID: "gdpr-2", Type: "OpenAccount", JSON: []byte(`{"owner":"Gus","currency":"EUR"}`)},
		{AggregateType: "account", AggregateID: "gdpr-2", Type: "Deposit", JSON: []byte(`{"amount":50}`)},
		{AggregateType: "account", AggregateID: "gdpr-2", Type: "DebitForTransfer", JSON: []byte(`{"transferId":"t1","to":"gdpr-3","amount":20}`)},
	} {
		if rep := h.Send(c); rep.Status != wire.StatusAccepted {
			t.Fatalf("%s: %+v", c.Type, rep)
		}
	}
	if out, code, _ := run(t, runErase, "account", "gdpr-2"); code != exitOK || !strings.Contains(out, "WARNING") || !strings.Contains(out, "1 outgoing transfer(s) in flight") {
		t.Fatalf("plan with a transfer in flight: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{}, {"account"}, {"account", "x", "extra"}} {
		if _, code, _ := run(t, runErase, args...); code != exitUsage {
			t.Errorf("erase %q: exit %d, want %d", args, code, exitUsage)
		}
	}
}
