package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/internal/examples/examplestest"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestDemoServesOpsEndpoints: the demo's processor (make run) serves
// /metrics with the processor's metrics, /healthz and /readyz, as
// cmd/processor does.
func TestDemoServesOpsEndpoints(t *testing.T) {
	h := examplestest.Harness(t, 2)
	d := newDemoOps()
	w := h.StartProcessor("w0", "", func(c *topology.Config) { c.Observer = d.Observer() })
	srv, err := d.start("127.0.0.1:0", w.Processor, h.Base.Logger)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if rep := h.Send(client.Command{AggregateType: "account", AggregateID: "ops-1", Type: "OpenAccount", JSON: []byte(`{"owner":"O","currency":"EUR"}`)}); rep.Status != wire.StatusAccepted {
		t.Fatalf("open: %+v", rep)
	}
	get := func(path string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		code, body, err := get(ctx, "http://"+srv.Addr().String()+path)
		if err != nil {
			t.Fatal(err)
		}
		return code, body
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := get("/metrics")
		ready, _ := get("/readyz")
		health, _ := get("/healthz")
		if code == http.StatusOK && strings.Contains(body, `kcqrs_commands_total{`) && ready == http.StatusOK && health == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics %d (commands counted: %v), /readyz %d, /healthz %d", code, strings.Contains(body, "kcqrs_commands_total{"), ready, health)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
