package topology

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
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
// fingerprint up there, outside any transaction (the topic is read in the
// background: the run loop waits for a read at most schemaTopicWait, so an
// unreachable schema topic never stalls the other partitions), and learns it
// (schemas.Set.Learn) if its current schema reads it, which forward (or
// full) compatibility guarantees: `make schemas-check COMPAT=full`. Data of
// a change that is not forward compatible stays unreadable, and its
// partition waits (unreadable.go). A record whose text is not a schema with
// its key's fingerprint is ignored, so a forged or corrupt record cannot
// hide the real one. Confluent's Schema Registry keeps its schemas in a
// topic the same way.

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
	mu      sync.Mutex
	texts   map[uint64][]byte
	readTo  int64         // the topic's end offset when last read; 0: never read
	reading bool          // a read is in flight (refreshSchemaBook)
	done    chan struct{} // closed when the read in flight ends
	failed  bool          // the last read failed: do not wait for the next
	// ctx ends the reads when Run returns (stopSchemaReads).
	ctx context.Context
	// gen counts the reads that added texts: a partition held back for
	// schemas it lacks is checked again at once when it moves
	// (unreadableWaiting).
	gen atomic.Int64
}

// learnSchemas learns the fingerprints it finds among the schema topic's
// texts read so far, those the current schemas read, and returns how many
// it learned. It never waits for the broker: it runs in the run loop, where
// a schema topic that cannot be read (its leader unavailable, say) would
// stall every partition for the read's timeout at each check. When a
// fingerprint is not among the texts read, it starts a read of the topic in
// the background (refreshSchemaBook); a read that finds texts wakes the
// partitions waiting for them.
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
	b := &p.schemaBook
	b.mu.Lock()
	if !b.reading && !b.failed && slices.ContainsFunc(missing, func(fp uint64) bool { _, ok := b.texts[fp]; return !ok }) {
		// A healthy topic is read in milliseconds: wait a little, so that
		// a rolling upgrade learns at the first meeting, without holding
		// the partition back. A topic that failed its last read is not
		// waited for.
		done := p.startSchemaRead(topic)
		b.mu.Unlock()
		t := time.NewTimer(schemaTopicWait)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
		b.mu.Lock()
	}
	defer b.mu.Unlock()
	n, absent := 0, 0
	for _, fp := range missing {
		text, ok := b.texts[fp]
		if !ok {
			absent++
			p.log.Warn("writer schema not in the schema topic (as read so far): the data stays unreadable (a newer build that does not publish its schemas, or a foreign writer)", "fingerprint", fmt.Sprintf("%#016x", fp), "topic", topic)
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
	if absent > 0 && !b.reading {
		p.startSchemaRead(topic)
	}
	return n
}

// startSchemaRead starts a background read of the schema topic and returns
// the channel closed when it ends. The caller holds b.mu, and no read is in
// flight.
func (p *Processor) startSchemaRead(topic string) <-chan struct{} {
	b := &p.schemaBook
	b.reading, b.done = true, make(chan struct{})
	go p.refreshSchemaBook(topic, b.done)
	return b.done
}

// startSchemaReads lets background reads of the schema topic run until the
// returned function is called, which ends them and waits for the one in
// flight (Run calls it before closing its admin client).
func (p *Processor) startSchemaReads() (stop func()) {
	b := &p.schemaBook
	ctx, cancel := context.WithCancel(context.Background())
	b.mu.Lock()
	b.ctx = ctx
	b.mu.Unlock()
	return func() {
		cancel()
		b.mu.Lock()
		done := b.done
		b.mu.Unlock()
		if done != nil {
			<-done
		}
	}
}

// schemaTopicWait bounds the run loop's wait for a read of the schema topic
// it started; the read goes on in the background.
const schemaTopicWait = 2 * time.Second

// refreshSchemaBook reads what the schema topic gained since the last read
// into the book, outside the run loop, bounded by schemaTopicReadTimeout.
func (p *Processor) refreshSchemaBook(topic string, done chan struct{}) {
	defer close(done)
	b := &p.schemaBook
	b.mu.Lock()
	from, parent := b.readTo, b.ctx
	b.mu.Unlock()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, schemaTopicReadTimeout)
	defer cancel()
	texts, to, err := p.readSchemaTopic(ctx, topic, from)
	if err != nil {
		p.log.Warn("reading the schema topic", "topic", topic, "err", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading, b.failed = false, err != nil
	if b.texts == nil {
		b.texts = map[uint64][]byte{}
	}
	for fp, text := range texts {
		b.texts[fp] = text
	}
	if to > b.readTo {
		b.readTo = to
	}
	if len(texts) > 0 {
		b.gen.Add(1)
	}
}

// schemaTopicReadTimeout bounds one background read of the schema topic.
const schemaTopicReadTimeout = 30 * time.Second

// readSchemaTopic reads the schema topic from offset from (or its start,
// if later) to its end, returning the texts found and the end offset read
// to (from when nothing was read).
func (p *Processor) readSchemaTopic(ctx context.Context, topic string, from int64) (map[uint64][]byte, int64, error) {
	texts := map[uint64][]byte{}
	ends, err := p.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return texts, from, err
	}
	end, ok := ends.Lookup(topic, 0)
	if !ok || end.Err != nil {
		return texts, from, fmt.Errorf("end offset unavailable: %v", end.Err)
	}
	if end.Offset == from {
		return texts, from, nil
	}
	starts, err := p.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return texts, from, err
	}
	start, ok := starts.Lookup(topic, 0)
	if !ok || start.Err != nil {
		return texts, from, fmt.Errorf("start offset unavailable: %v", start.Err)
	}
	if lo := max(start.Offset, from); lo < end.Offset {
		ignored := 0
		_, err = logread.Read(ctx, p.admCl, topic, 0, lo, end.Offset, logread.Options{}, func(r *kgo.Record) error {
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
			texts[fp] = r.Value
			return nil
		})
		if ignored > 0 {
			p.log.Warn("schema topic records ignored: not a schema, or not the schema of their key's fingerprint", "topic", topic, "records", ignored)
		}
		if err != nil {
			return texts, from, err
		}
	}
	return texts, end.Offset, nil
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
