package topology_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// Helpers of the personal-data tests (erasure_test.go).

func masterKey(t *testing.T, b byte) *shred.MasterKey {
	t.Helper()
	m, err := shred.NewMasterKey(bytes.Repeat([]byte{b}, shred.KeyLen))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func withMaster(m shred.KeyWrapper) func(*topology.Config) {
	return func(c *topology.Config) { c.Personal = m }
}

// eraseRecord is the erasure of account id as a raw command record on h's
// commands topic, its token made with master key w.
func eraseRecord(t *testing.T, h *topologytest.Harness, w shred.KeyWrapper, id string) *kgo.Record {
	t.Helper()
	token, err := shred.EraseToken(w, "account/"+id)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{
		Topic:     h.Topic("commands"),
		Partition: topology.PartitionFor([]byte(id), partitions),
		Key:       []byte(id),
		Value:     token,
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandType, Value: []byte(topology.EraseCommandType)},
			{Key: wire.HeaderAggregateType, Value: []byte("account")},
			{Key: wire.HeaderCommandID, Value: []byte("erase-" + id)},
		},
	}
}

// rawRecords reads every record of every topic read_uncommitted, from the
// log start to the high watermark: committed and aborted alike.
func rawRecords(t *testing.T, h *topologytest.Harness) map[string][]*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := h.Admin()
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*kgo.Record{}
	for _, topic := range topics.Names() {
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(h.Brokers...)}, h.ClientOpts...)...)
		if err != nil {
			t.Fatal(err)
		}
		ends.Each(func(o kadm.ListedOffset) {
			s, _ := starts.Lookup(topic, o.Partition)
			_, err := logread.Read(ctx, cl, topic, o.Partition, s.Offset, o.Offset, logread.Options{Uncommitted: true}, func(r *kgo.Record) error {
				out[topic] = append(out[topic], r)
				return nil
			})
			if err != nil {
				t.Fatalf("read %s[%d]: %v", topic, o.Partition, err)
			}
		})
		cl.Close()
	}
	return out
}

// scanFor reports every place the needles appear: record keys, values and
// headers of every topic, and every file under dirs.
func scanFor(t *testing.T, h *topologytest.Harness, dirs []string, needles map[string][]byte) []string {
	t.Helper()
	var hits []string
	check := func(where string, b []byte) {
		for name, n := range needles {
			if len(n) > 0 && bytes.Contains(b, n) {
				hits = append(hits, name+" in "+where)
			}
		}
	}
	for topic, recs := range rawRecords(t, h) {
		for _, r := range recs {
			where := topic + "@" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10)
			check(where+" key", r.Key)
			check(where+" value", r.Value)
			for _, hd := range r.Headers {
				check(where+" header "+hd.Key, hd.Value)
			}
		}
	}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			check(path, b)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return hits
}

// keyringFromTopic loads the keys topic into a fresh keyring, failing on a
// subject with two key records (a key must be created exactly once).
func keyringFromTopic(t *testing.T, h *topologytest.Harness, mk shred.KeyWrapper) *shred.Keyring {
	t.Helper()
	ring := shred.NewKeyring()
	seen := map[string]bool{}
	for _, r := range h.ReadTopic(h.Topic(topology.DefaultKeysTopic)) {
		s := string(r.Key)
		switch {
		case shred.IsErasedMarker(r.Value):
			ring.Delete(s)
		case r.Value != nil:
			if seen[s] {
				t.Fatalf("a second key record for %s at %d/%d: a key must be created once", s, r.Partition, r.Offset)
			}
			seen[s] = true
			k, err := shred.DecodeKeyRecord(mk, s, r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if err := ring.Put(s, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ring
}
