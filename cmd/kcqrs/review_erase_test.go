package main

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// TestEraseIDThatLooksLikeAFlag: an aggregate id is any Kafka key, and
// `kcqrs send --id -x` creates one starting with '-'. Its personal data must
// be erasable with `kcqrs erase` too: after "--" the arguments are the type
// and id, whatever they look like. Before, every id starting with '-' was
// taken for a flag (a usage error): such a subject could not be erased.
func TestEraseIDThatLooksLikeAFlag(t *testing.T) {
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	h := topologytest.New(t, reg, 2)
	mk, err := shred.NewMasterKey(bytes.Repeat([]byte{5}, shred.KeyLen))
	if err != nil {
		t.Fatal(err)
	}
	h.StartProcessor("w0", "", func(c *topology.Config) { c.Personal = mk })
	t.Setenv(shred.MasterKeyEnv, hex.EncodeToString(bytes.Repeat([]byte{5}, shred.KeyLen)))
	t.Setenv("KCQRS_BROKERS", strings.Join(h.Brokers, ","))
	const id = "--execute"
	if rep := h.Send(client.Command{AggregateType: "account", AggregateID: id, Type: "OpenAccount", JSON: []byte(`{"owner":"Dash","currency":"EUR"}`)}); rep.Status != wire.StatusAccepted {
		t.Fatalf("open: %+v", rep)
	}
	// A dry run of it sends nothing.
	out, code, _ := run(t, runErase, "account", "--", id)
	if code != exitOK || !strings.Contains(out, "account/"+id) || !strings.Contains(out, "Dry run") {
		t.Fatalf("plan of %q: exit %d\n%s", id, code, out)
	}
	dep := client.Command{AggregateType: "account", AggregateID: id, Type: "Deposit", JSON: []byte(`{"amount":5}`)}
	if rep := h.Send(dep); rep.Status != wire.StatusAccepted {
		t.Fatalf("a dry run erased something: %+v", rep)
	}
	out, code, _ = run(t, runErase, "--execute", "--", "account", id)
	if code != exitOK || !strings.Contains(out, `"status": "ACCEPTED"`) {
		t.Fatalf("erase %q: exit %d\n%s", id, code, out)
	}
	if rep := h.Send(dep); rep.Code != topology.CodeErased {
		t.Fatalf("after the erasure: %+v", rep)
	}
}
