package topology_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// TestCommandLogLinesCarryTheirCoordinates: a line about a command names its
// partition, offset and command id, so an operator can find the record.
func TestCommandLogLinesCarryTheirCoordinates(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var out topologytest.SyncBuffer
	h.StartProcessor("w0", "", func(c *topology.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	id := client.NewID()
	rep := h.Send(client.Command{AggregateType: "account", AggregateID: "log-1", Type: "Deposit", ID: id, Avro: []byte("not avro")})
	if rep.Status != wire.StatusInvalid {
		t.Fatalf("reply %+v", rep)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, line := range strings.Split(out.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "command dead-lettered" {
				continue
			}
			if rec["command"] != id || rec["partition"] != float64(topology.PartitionFor([]byte("log-1"), partitions)) || rec["offset"] == nil {
				t.Fatalf("log line lacks the command's coordinates: %s", line)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead-letter log line:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
