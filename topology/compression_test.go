package topology_test

import (
	"testing"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestOutputCompression: by default the processor writes uncompressed
// batches (what every client reads: kafkajs cannot read snappy without a
// plugin); Config.Compression picks the codec of every output topic.
func TestOutputCompression(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		codec uint8 // Kafka's record batch attribute: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd
	}{{"", 0}, {topology.CompressionGzip, 1}, {topology.CompressionZstd, 4}} {
		h := newHarness(t)
		h.StartProcessor("w0", "", func(cfg *topology.Config) { cfg.Compression = c.name })
		wantStatus(t, h.Send(cmd("account", "cz", "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
		// franz-go sends a batch uncompressed when compressing does not
		// shrink it (a small snapshot): the codec, or none, never another.
		seen := false
		for _, topic := range []string{"command_reply", "events", "snapshots-changelog"} {
			recs := h.ReadTopic(topic)
			if len(recs) == 0 {
				t.Fatalf("compression %q: nothing on %s", c.name, topic)
			}
			for _, r := range recs {
				got := r.Attrs.CompressionType()
				if got != c.codec && got != 0 {
					t.Fatalf("compression %q: %s batch codec %d, want %d", c.name, topic, got, c.codec)
				}
				seen = seen || got == c.codec
			}
		}
		if !seen {
			t.Fatalf("compression %q: no batch with codec %d", c.name, c.codec)
		}
	}
	if err := (&topology.Config{Brokers: []string{"b:1"}, InstanceID: "i", Compression: "brotli"}).Validate(); err == nil {
		t.Fatal("compression brotli accepted")
	}
}
