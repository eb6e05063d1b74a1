package topology

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/schemas"
)

// The schema topic makes a rollback across a forward compatible change safe
// by construction. Every worker publishes, before it joins its group, every
// schema it knows (key: the fingerprint in hex, value: the schema's JSON) to
// one compacted partition. A worker that meets a snapshot or event whose
// writer schema it lacks (an older build after a rollback, or an old worker
// inheriting a partition a new one wrote to in a rolling upgrade) looks the
// fingerprint up there, outside any transaction, and learns it
// (schemas.Set.Learn) if its current schema reads it, which forward (or
// full) compatibility guarantees: `make schemas-check COMPAT=full`. Data of
// a change that is not forward compatible stays unreadable, and its
// partition waits (unreadable.go). Confluent's Schema Registry keeps its
// schemas in a topic the same way.

// DefaultSchemaTopic is Config.SchemaTopic's default.
const DefaultSchemaTopic = "kcqrs-schemas"

// schemaTopic returns the schema topic, "" when disabled.
func (c *Config) schemaTopic() string {
	if c.SchemaTopic == "-" {
		return ""
	}
	return c.SchemaTopic
}

// ensureSchemaTopic creates the schema topic (one partition, compacted,
// kept forever) if it is missing.
func (c *Config) ensureSchemaTopic(ctx context.Context, cl *kgo.Client) error {
	topic := c.schemaTopic()
	if topic == "" {
		return nil
	}
	adm := kadm.NewClient(cl)
	// Only when missing: creating an existing topic without the Create ACL
	// is refused, and a team may create it beforehand.
	if listed, err := adm.ListTopics(ctx, topic); err == nil && listed.Has(topic) && listed[topic].Err == nil {
		return nil
	}
	resp, err := adm.CreateTopic(ctx, 1, int16(c.ReplicationFactor),
		map[string]*string{"cleanup.policy": ptr("compact")}, topic)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
		create := topicPerm(kmsg.ACLOperationCreate, topic, "create the schema topic")
		create.ToCreate = true
		return fmt.Errorf("topology: create the schema topic %q (Config.SchemaTopic; \"-\" disables it): %w", topic, &PermissionError{Missing: []Permission{create}})
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("topology: create the schema topic %q (Config.SchemaTopic; \"-\" disables it): %w", topic, err)
	}
	return nil
}

// publishSchemas writes every schema the registry knows to the schema
// topic. Compaction keeps one record per fingerprint.
func (p *Processor) publishSchemas(ctx context.Context) error {
	topic := p.cfg.schemaTopic()
	if topic == "" {
		return nil
	}
	var recs []*kgo.Record
	seen := map[uint64]bool{}
	for _, set := range p.reg.sets {
		for _, c := range set.Known() {
			if !seen[c.Fingerprint()] {
				seen[c.Fingerprint()] = true
				recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Key: []byte(fpKey(c.Fingerprint())), Value: []byte(c.Source())})
			}
		}
	}
	// Not idempotent: a retried duplicate is harmless (same key, same
	// value), and an idempotent producer would need one more ACL.
	cl, err := kgo.NewClient(p.clientOpts(kgo.DisableIdempotentWrite(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(pctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("topology: publish schemas to %q: %w", topic, err)
	}
	p.log.Info("schemas published", "topic", topic, "schemas", len(recs))
	return nil
}

func fpKey(fp uint64) string { return fmt.Sprintf("%016x", fp) }

// schemaBook is what the worker read of the schema topic.
type schemaBook struct {
	mu     sync.Mutex
	texts  map[uint64][]byte
	readTo int64 // the topic's end offset when last read; -1: never read
}

// learnSchemas looks the fingerprints up in the schema topic (reading it
// again only if it grew since the last look) and learns those the current
// schemas read. It returns how many it learned. Outside any transaction.
func (p *Processor) learnSchemas(fps []uint64) int {
	topic := p.cfg.schemaTopic()
	if topic == "" || len(fps) == 0 {
		return 0
	}
	var missing []uint64
	for _, fp := range fps {
		if !p.reg.knows(fp) {
			missing = append(missing, fp)
		}
	}
	if len(missing) == 0 {
		return len(fps) // learned meanwhile
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := &p.schemaBook
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := p.readSchemaTopic(ctx, topic); err != nil {
		p.log.Warn("reading the schema topic", "topic", topic, "err", err)
	}
	n := 0
	for _, fp := range missing {
		text, ok := b.texts[fp]
		if !ok {
			p.log.Warn("writer schema not in the schema topic: the data stays unreadable (a newer build that does not publish its schemas, or a foreign writer)", "fingerprint", fmt.Sprintf("%#016x", fp), "topic", topic)
			continue
		}
		c, err := p.reg.learn(fp, text)
		if err != nil {
			p.log.Error("a newer build's schema cannot be read by this build (the change was not forward compatible; see make schemas-check COMPAT=full)", "fingerprint", fmt.Sprintf("%#016x", fp), "err", err)
			continue
		}
		p.log.Info("learned a newer build's writer schema; its data is read by resolution", "record", c.Name(), "fingerprint", fmt.Sprintf("%#016x", fp), "topic", topic)
		n++
	}
	return n
}

// readSchemaTopic reads the schema topic into the book if it grew. The
// caller holds b.mu.
func (p *Processor) readSchemaTopic(ctx context.Context, topic string) error {
	b := &p.schemaBook
	if b.texts == nil {
		b.texts, b.readTo = map[uint64][]byte{}, -1
	}
	ends, err := p.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	end, ok := ends.Lookup(topic, 0)
	if !ok || end.Err != nil {
		return fmt.Errorf("end offset unavailable: %v", end.Err)
	}
	if end.Offset == b.readTo {
		return nil
	}
	starts, err := p.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return err
	}
	start, ok := starts.Lookup(topic, 0)
	if !ok || start.Err != nil {
		return fmt.Errorf("start offset unavailable: %v", start.Err)
	}
	from := max(start.Offset, b.readTo)
	if from < end.Offset {
		ignored := 0
		_, err = logread.Read(ctx, p.admCl, topic, 0, from, end.Offset, logread.Options{}, func(r *kgo.Record) error {
			fp, err := strconv.ParseUint(string(r.Key), 16, 64)
			if err != nil || r.Value == nil {
				ignored++
				return nil
			}
			// Only a text that has the key's fingerprint is kept: a forged
			// or corrupt record written after the real one must not hide
			// it (Learn would refuse it, and the partition would wait).
			if got, ferr := schemas.TextFingerprint(r.Value); ferr != nil || got != fp {
				ignored++
				return nil
			}
			b.texts[fp] = r.Value
			return nil
		})
		if err != nil {
			return err
		}
		if ignored > 0 {
			p.log.Warn("schema topic records ignored: not a schema, or not the schema of their key's fingerprint", "topic", topic, "records", ignored)
		}
	}
	b.readTo = end.Offset
	return nil
}

// Learned returns the writer schemas of newer builds this registry learned
// (from the schema topic), in no particular order.
func (r *Registry) Learned() []*schemas.Codec {
	var out []*schemas.Codec
	for _, set := range r.sets {
		out = append(out, set.Learned()...)
	}
	return out
}

// knows reports whether some schema of the registry (learned ones
// included) has fingerprint fp.
func (r *Registry) knows(fp uint64) bool {
	for _, set := range r.sets {
		if _, ok := set.ByFingerprint(fp); ok {
			return true
		}
	}
	return false
}

// learn learns a writer schema into the set holding its record.
func (r *Registry) learn(fp uint64, text []byte) (*schemas.Codec, error) {
	for _, name := range r.AggregateTypes() {
		c, err := r.types[name].upcast.Learn(fp, text)
		if errors.Is(err, schemas.ErrNotInSet) {
			continue
		}
		return c, err
	}
	return r.envelopes.Learn(fp, text)
}
