package history_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestForgedRecordInAnotherPartitionAtTheSameOffset: index entries were
// keyed by (type, id, version, offset), the partition only in the value.
// A record copied into another partition at the very offset of the
// aggregate's latest event replaced that event's entry, and the history
// silently ended one version early. A record in a partition its key does
// not route to is no aggregate's event: it must not hide one that is.
func TestForgedRecordInAnotherPartitionAtTheSameOffset(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.h.StartProcessor("p1", "")
	id := ""
	for i := 0; id == ""; i++ {
		if c := fmt.Sprintf("col-%d", i); topology.PartitionFor([]byte(c), 2) == 0 {
			id = c
		}
	}
	e.send(cmd("account", id, "OpenAccount", `{"owner":"C","currency":"EUR"}`), wire.StatusAccepted)
	e.send(cmd("account", id, "Deposit", `{"amount":4}`), wire.StatusAccepted)
	var last *kgo.Record
	for _, r := range e.h.ReadTopic("events") {
		if env, _, err := e.h.Registry.DecodeEvents(r.Value); err == nil && env.AggregateID == id && env.Version == 2 {
			last = r
		}
	}
	if last == nil {
		t.Fatal("no version 2")
	}
	e.openIndex(t.TempDir())
	e.indexed(e.scan())
	// What the indexer does when it reads, in partition 1, a copy of that
	// record at the same offset (producing one there at exactly that
	// offset is possible for any writer of the topic; applied directly
	// here to keep the test short).
	forged := &kgo.Record{Topic: last.Topic, Partition: 1, Offset: last.Offset, Key: last.Key, Value: last.Value, Headers: last.Headers, Timestamp: last.Timestamp}
	if _, err := e.idx.Apply(1, []*kgo.Record{forged}, 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got, err := e.r.History(ctx, "account", id, 1, 0)
	if err != nil || len(got) != 2 || got[1].Partition != 0 {
		t.Fatalf("History = %s, %v; want versions 1 and 2 of partition 0", describe(got), err)
	}
}

// TestIndexOfAnOlderLayoutIsEmptied: an index of an older key layout is
// emptied when opened, so that its entries are never misread; the indexer
// rebuilds it. Layout 1 had no partition in the key and no layout marker;
// layout 2 had fixed-width numbers and no CRC.
func TestIndexOfAnOlderLayoutIsEmptied(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tail   int               // bytes after the stream: version, (partition,) offset
		marker map[string][]byte // the layout marker, if the layout wrote one
	}{
		{"layout 1", 16, nil},
		{"layout 2", 20, map[string][]byte{"\x00f": {2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest})
			if err != nil {
				t.Fatal(err)
			}
			old := append([]byte{0x01, 7}, "account"...)
			old = append(append(old, 3), "a-1"...)
			old = append(old, make([]byte, tc.tail)...)
			kvs := map[string][]byte{string(old): make([]byte, 12), "\x00c\x00\x00\x00\x00": {0, 0, 0, 0, 0, 0, 0, 9}}
			for k, v := range tc.marker {
				kvs[k] = v
			}
			for k, v := range kvs {
				if err := db.Set([]byte(k), v, pebble.Sync); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			idx, err := history.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer idx.Close()
			if _, ok, err := idx.Checkpoint(0); ok || err != nil {
				t.Fatalf("checkpoint of the old index kept (%v, %v)", ok, err)
			}
			n := 0
			if err := idx.Dump(func(string, string, history.Pointer) { n++ }); err != nil || n != 0 {
				t.Fatalf("old entries kept: %d, %v", n, err)
			}
		})
	}
}
