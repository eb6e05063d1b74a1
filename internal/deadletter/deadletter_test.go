package deadletter

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/wire"
)

// TestHeaderIsTheLastOne: a dead letter carries all of the command's
// headers, then the processor's kcqrs_dlq_* ones; a command that came with
// its own kcqrs_dlq_* headers must not pass them off as the processor's
// (the contract: when a header appears twice, the last one counts). Before,
// Header returned the first: kcqrs dlq list and show reported the command's
// forged error and pointer.
func TestHeaderIsTheLastOne(t *testing.T) {
	r := &kgo.Record{Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{
		{Key: wire.HeaderCommandID, Value: []byte("c")},
		{Key: wire.HeaderDLQError, Value: []byte("forged: not this")},
		{Key: wire.HeaderDLQOffset, Value: []byte("999")},
		{Key: wire.HeaderDLQError, Value: []byte("undecodable: the processor's")},
		{Key: wire.HeaderDLQTopic, Value: []byte("commands")},
		{Key: wire.HeaderDLQPartition, Value: []byte("2")},
		{Key: wire.HeaderDLQOffset, Value: []byte("17")},
	}}
	if got := Header(r, wire.HeaderDLQError); got != "undecodable: the processor's" {
		t.Errorf("error %q, want the processor's", got)
	}
	if got := Header(r, wire.HeaderDLQOffset); got != "17" {
		t.Errorf("offset %q, want 17", got)
	}
	if got := Header(r, "absent"); got != "" {
		t.Errorf("absent header: %q", got)
	}
}
