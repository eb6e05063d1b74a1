package topology_test

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestJSONWithoutContentTypeIsAnsweredInJSON: a JSON command without the
// content-type header is answered INVALID in JSON (a JSON client can read
// it), naming the header to set; its dead letter carries the code once; the
// same command with an upper-case media type is accepted.
func TestJSONWithoutContentTypeIsAnsweredInJSON(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.StartProcessor("w0", "")
	id := "ct"
	rec := commandRecord(id, topology.PartitionFor([]byte(id), partitions), "OpenAccount", `{"owner":"O","currency":"EUR"}`)
	var kept []kgo.RecordHeader
	for _, hd := range rec.Headers {
		if hd.Key != wire.HeaderContentType {
			kept = append(kept, hd)
		}
	}
	rec.Headers = kept
	rep := rawSend(t, h, rec)
	if rep.Status != wire.StatusInvalid || rep.Code != topology.CodeUnsupportedContent || !strings.Contains(rep.Message, "content-type") {
		t.Fatalf("reply %+v, want INVALID %s naming the header", rep, topology.CodeUnsupportedContent)
	}
	for _, r := range h.ReadTopic("command_reply") {
		if header(r, wire.HeaderCommandID) == rep.CommandID && contentType(r) != wire.ContentTypeJSON {
			t.Fatalf("reply in %q, want JSON", contentType(r))
		}
	}
	dl := h.ReadTopic("commands-dlq")
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	if e := header(dl[0], wire.HeaderDLQError); strings.Count(e, topology.CodeUnsupportedContent) != 1 {
		t.Fatalf("dead letter error %q, want the code once", e)
	}

	rec = commandRecord(id, topology.PartitionFor([]byte(id), partitions), "OpenAccount", `{"owner":"O","currency":"EUR"}`)
	for i := range rec.Headers {
		if rec.Headers[i].Key == wire.HeaderContentType {
			rec.Headers[i].Value = []byte("Application/JSON; charset=UTF-8")
		}
	}
	if rep := rawSend(t, h, rec); rep.Status != wire.StatusAccepted {
		t.Fatalf("upper-case media type: %+v", rep)
	}
}
