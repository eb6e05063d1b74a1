package topology

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/wire"
)

// Personal data (docs/erasure.md). Fields marked "kcqrs.personal" in the
// event and state schemas are sealed with the subject's data key when an
// event or a snapshot is encoded (records_stored.go) and opened when one is
// decoded, so the events topic, the changelog and the Pebble stores only
// ever hold ciphertext of them, and the domain only ever sees plain values.
// The subject is the aggregate: "type/id" (its snapshot key).
//
// The keys topic is compacted and co-partitioned with the commands: the key
// of an aggregate lives in the partition of its commands, written only by
// that partition's owner, in the transaction of the aggregate's first event.
// Keys are held in memory (a shred.Keyring), loaded from the keys topic at
// start (which is where a wrong master key stops the worker) and again for
// a partition whenever its store is caught up.

// EraseCommandType is the command type (header kcqrs_command_type) of an
// erasure: a command record with this type erases the aggregate its key
// names when its value is an erasure token of the processor's master key
// (shred.EraseToken), so only a holder of the master key can erase. Send it
// with EraseSubject or `kcqrs erase`.
const EraseCommandType = "kcqrs.EraseSubject"

const (
	// CodeErased (REJECTED): the aggregate was erased (its personal data
	// crypto-shredded, see docs/erasure.md); no command is accepted for it
	// any more.
	CodeErased = "erased"
	// CodeEraseRefused (INVALID): an erasure (kcqrs_command_type
	// kcqrs.EraseSubject) whose value is not an erasure token of the
	// processor's master key for that aggregate, or sent to a processor
	// without personal data; nothing is erased.
	CodeEraseRefused = "erase_refused"
)

type shredding struct {
	ring   *shred.Keyring
	fields map[reflect.Type]*shred.Fields // by struct type; absent: none
	types  map[*boundType]bool            // types with a personal field
}

// EnablePersonal turns on the sealing of personal fields with the keys of
// ring. New calls it when Config.Personal is set; tools that only decode
// (a projector, the CLI) call it with a keyring they loaded (LoadKeys).
func (r *Registry) EnablePersonal(ring *shred.Keyring) error {
	s := &shredding{ring: ring, fields: map[reflect.Type]*shred.Fields{}, types: map[*boundType]bool{}}
	for _, bt := range r.types {
		st := bt.stateType
		pf, err := bt.state.PersonalGoFields(st)
		if err != nil {
			return fmt.Errorf("topology: personal fields of %s: %w", bt.handler.AggregateType(), err)
		}
		if f := shred.NewFields(st, pf); f != nil {
			s.fields[st] = f
			s.types[bt] = true
		}
		for _, msg := range bt.events {
			pf, err := msg.codec.PersonalGoFields(msg.typ)
			if err != nil {
				return fmt.Errorf("topology: personal fields of %s: %w", msg.name, err)
			}
			if f := shred.NewFields(msg.typ, pf); f != nil {
				s.fields[msg.typ] = f
				s.types[bt] = true
			}
		}
	}
	r.shred = s
	return nil
}

// withPersonal returns a copy of r sealing with ring (EnablePersonal on the
// copy); r is unchanged. The bound types are shared: they hold no personal
// state.
func (r *Registry) withPersonal(ring *shred.Keyring) (*Registry, error) {
	cp := *r
	if err := cp.EnablePersonal(ring); err != nil {
		return nil, err
	}
	return &cp, nil
}

// Keyring returns the processor's keyring of personal data (nil without
// Config.Personal). Keys are secrets: for tests and diagnostics only.
func (p *Processor) Keyring() *shred.Keyring { return p.reg.Keyring() }

// Keyring returns the keyring of EnablePersonal, or nil.
func (r *Registry) Keyring() *shred.Keyring {
	if r.shred == nil {
		return nil
	}
	return r.shred.ring
}

func subjectOf(aggregateType, aggregateID string) string {
	return snapshotKey(aggregateType, aggregateID)
}

// seal returns v with its personal fields sealed for subject (v unchanged
// when there are none or sealing is off).
func (r *Registry) seal(subject string, v any) (any, error) {
	if r.shred == nil {
		return v, nil
	}
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	f := r.shred.fields[t]
	if f == nil {
		return v, nil
	}
	return f.Seal(r.shred.ring, subject, v)
}

// sealToEncode is seal for an encoder (schemas.Codec.Encode takes a struct
// or a pointer): the sealed copy comes from a pool (shred.Fields.SealPtr);
// call f.Release(sealed) once it is encoded (f may be nil).
func (r *Registry) sealToEncode(subject string, v any) (sealed any, f *shred.Fields, err error) {
	return r.sealToEncodeEntry(nil, subject, v)
}

// sealToEncodeEntry is sealToEncode with ent, the subject's keyring entry
// of this command (nil: looked up).
func (r *Registry) sealToEncodeEntry(ent *shred.Entry, subject string, v any) (sealed any, f *shred.Fields, err error) {
	if r.shred == nil {
		return v, nil, nil
	}
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	f = r.shred.fields[t]
	if f == nil {
		return v, nil, nil
	}
	sealed, err = f.SealPtrEntry(r.shred.ring, ent, subject, v)
	return sealed, f, err
}

// encodeSealed encodes v with c, its personal fields sealed for subject
// with ent (the subject's keyring entry of this command; nil: looked up).
// The compiled plan writes the sealed values in place of the plain ones
// (schemas.Codec.EncodeSealed); a type without one is sealed into a copy.
func (r *Registry) encodeSealed(c *schemas.Codec, ent *shred.Entry, subject string, v any) ([]byte, error) {
	if r.shred == nil {
		return c.Encode(v)
	}
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if r.shred.fields[t] == nil {
		return c.Encode(v)
	}
	ring := r.shred.ring
	out, ok, err := c.EncodeSealed(v, func(plain string) (string, error) { return ring.SealEntry(ent, subject, plain) })
	if ok {
		return out, err
	}
	sealed, sealer, err := r.sealToEncodeEntry(ent, subject, v)
	if err != nil {
		return nil, err
	}
	out, err = c.Encode(sealed)
	sealer.Release(sealed)
	return out, err
}

// open opens the personal fields of the decoded value ptr points to.
func (r *Registry) open(subject string, ptr reflect.Value) error {
	if r.shred == nil {
		return nil
	}
	f := r.shred.fields[ptr.Type().Elem()]
	if f == nil {
		return nil
	}
	_, err := f.Open(r.shred.ring, subject, ptr)
	return err
}

// openValue opens v (a struct or a pointer to one) and returns it in the
// same form.
func (r *Registry) openValue(subject string, v any) (any, error) {
	if r.shred == nil || v == nil {
		return v, nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		return v, r.open(subject, rv)
	}
	if r.shred.fields[rv.Type()] == nil {
		return v, nil
	}
	ptr := reflect.New(rv.Type())
	ptr.Elem().Set(rv)
	if err := r.open(subject, ptr); err != nil {
		return nil, err
	}
	return ptr.Elem().Interface(), nil
}

// erased reports whether the aggregate was erased.
func (r *Registry) erased(aggregateType, aggregateID string) bool {
	return r.ringEntry(aggregateType, aggregateID).Erased()
}

// ringEntry is the aggregate's keyring entry (nil without one, or without
// personal data): one lookup per command serves its erasure check, its key
// creation (ensureKey) and the seal of its snapshot. The subject is built
// in a buffer on the stack, not allocated.
func (r *Registry) ringEntry(aggregateType, aggregateID string) *shred.Entry {
	if r.shred == nil {
		return nil
	}
	var buf [128]byte
	b := append(append(append(buf[:0], aggregateType...), '/'), aggregateID...)
	return r.shred.ring.GetBytes(b)
}

// ensureKey gives a's subject a data key when its type has personal fields
// and it has none: the key record goes into this batch's transaction, with
// the aggregate's first event, and is forgotten again if the transaction
// does not commit (the partition is then caught up, keys included).
//
// ent is the subject's entry as the command found it (nil: none); the
// subject's entry from here on is returned.
func (p *Processor) ensureKey(b *batch, part int32, a *aggState, ent *shred.Entry) (*shred.Entry, error) {
	s := p.reg.shred
	if s == nil || !s.types[a.bt] {
		return ent, nil
	}
	subject := a.key
	if !ent.Current() {
		ent = s.ring.Get(subject)
	}
	if ent.HasKey() {
		return ent, nil
	}
	if ent.Erased() {
		return ent, nil // sealed as shred.Erased: nothing personal is stored
	}
	k, err := shred.NewDataKey()
	if err != nil {
		return nil, err
	}
	val, err := shred.EncodeKeyRecord(p.cfg.Personal, subject, k)
	if err != nil {
		return nil, err
	}
	if err := s.ring.Put(subject, k); err != nil {
		return nil, err
	}
	b.keys = append(b.keys, subject)
	p.produce(b, &kgo.Record{Topic: p.cfg.Topics.Keys, Partition: part, Key: []byte(subject), Value: val}, nil)
	return s.ring.Get(subject), nil
}

// forgetBatchKeys drops the keys and erasures of a batch that did not
// commit; the partitions are suspect and reload their keys before next use.
func (p *Processor) forgetBatchKeys(b *batch) {
	if p.reg.shred == nil {
		return
	}
	for _, s := range b.keys {
		p.reg.shred.ring.Forget(s)
	}
}

// loadKeys reads keys-topic partitions into the keyring (all of them when
// part < 0), read_committed up to the last stable offset. A key wrapped by
// another master key stops it with a *shred.WrongMasterKeyError.
func (p *Processor) loadKeys(ctx context.Context, part int32) error {
	if p.reg.shred == nil {
		return nil
	}
	topic := p.cfg.Topics.Keys
	starts, err := p.adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("topology: keys topic start offsets: %w", err)
	}
	stable, err := p.adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = stable.Error()
	}
	if err != nil {
		return fmt.Errorf("topology: keys topic stable offsets: %w", err)
	}
	cl, err := kgo.NewClient(p.clientOpts()...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ring := p.reg.shred.ring
	for q, end := range stable[topic] {
		if part >= 0 && q != part {
			continue
		}
		from := int64(0)
		if so, ok := starts.Lookup(topic, q); ok {
			from = so.Offset
		}
		_, err := logread.Read(ctx, cl, topic, q, from, end.Offset, logread.Options{}, func(r *kgo.Record) error {
			return applyKeyRecord(p.cfg.Personal, ring, r, p.log)
		})
		if err != nil {
			return fmt.Errorf("topology: keys topic %s[%d]: %w", topic, q, err)
		}
	}
	return nil
}

// applyKeyRecord applies one keys-topic record to ring. A record that is not
// a key record at all (only a misconfigured client writes one: ACLs keep
// the others out) is logged and skipped: stopping on it would stop every
// worker at start for one bad record, while skipping it loses nothing (a key
// record before it stays; a subject without a key reads as an error
// (shred.ErrNoKey), never as erased). A key record that does not open (a
// wrong master key) is an error: it stops the start.
func applyKeyRecord(w shred.KeyWrapper, ring *shred.Keyring, r *kgo.Record, log *slog.Logger) error {
	subject := string(r.Key)
	switch {
	case r.Value == nil && !ring.Erased(subject):
		ring.Forget(subject)
	case shred.IsErasedMarker(r.Value):
		ring.Delete(subject)
	case ring.Erased(subject):
		// Erasure is irreversible: a key record or a tombstone after the
		// marker (a client with the master key writing here by mistake, a
		// mirror of another cluster, a clean-up script) must not revive
		// the subject.
		log.Error("keys topic: ignored a key record or tombstone for a subject erased before it",
			"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "subject", capText(subject, 200))
	default:
		k, err := shred.DecodeKeyRecord(w, subject, r.Value)
		if errors.Is(err, shred.ErrBadKeyRecord) {
			log.Error("keys topic: skipped a record that is not a key record (who may write this topic?)",
				"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "subject", capText(subject, 200), "bytes", len(r.Value))
			return nil
		}
		if err != nil {
			return err
		}
		return ring.Put(subject, k)
	}
	return nil
}

// handleErase erases the aggregate a command record names: in the batch's
// transaction, the erasure marker replaces its key record in the keys topic
// and its snapshot is replaced by one without personal data (see below).
func (p *Processor) handleErase(b *batch, ps *partitionState, r *kgo.Record, meta *commandMeta, bt *boundType, base wire.Reply) {
	if p.reg.shred == nil {
		p.reject(b, r, meta, base, invalid(CodeEraseRefused, "this processor has no master key (Config.Personal): it stores no personal data to erase"))
		return
	}
	if err := shred.CheckEraseToken(p.cfg.Personal, subjectOf(meta.aggregateType, meta.aggregateID), r.Value); err != nil {
		p.reject(b, r, meta, base, invalid(CodeEraseRefused, "the value is not an erasure token of this processor's master key (%s) for %s", p.cfg.Personal.ID(), capText(subjectOf(meta.aggregateType, meta.aggregateID), 200)))
		return
	}
	a, err := p.load(ps, bt, meta.aggregateID)
	if err != nil && p.deferForRebuild(b, ps, r, err) {
		return // rebuilt outside the transaction, then handled again
	}
	if err != nil && p.deferUnreadable(ps, r, err) {
		return // its partition waits for a build that reads it, as for any command
	}
	if err != nil && p.refuseKeyLost(b, r, meta, base, err) {
		return // its key is already gone: nothing left to erase but the snapshot, refused like any command
	}
	if err != nil {
		b.fail(fmt.Errorf("erase %s/%s: %w", meta.aggregateType, meta.aggregateID, err))
		return
	}
	subject := a.key
	p.reg.shred.ring.Delete(subject)
	b.keys = append(b.keys, subject)
	p.produce(b, &kgo.Record{Topic: p.cfg.Topics.Keys, Partition: ps.p, Key: []byte(subject), Value: shred.ErasedMarker}, nil)
	// The snapshot is replaced by one without personal data: the state
	// with its personal fields erased (sealing an erased subject yields
	// shred.Erased), its version kept, and no remembered reply (a reply
	// may quote input). The non-personal state (balance, pending transfers,
	// credit marks) is what the events still fold to; the legs of a
	// transfer that was running need it to end (docs/transfers.md).
	st, err := p.reg.seal(subject, a.state)
	if err != nil {
		b.fail(fmt.Errorf("erase %s: %w", subject, err))
		return
	}
	a.state, a.dirty = st, true
	a.recent, a.recentEnc, a.snap = nil, nil, nil
	rep := base
	rep.Status, rep.Version = wire.StatusAccepted, a.version
	rep.Message = "erased: personal data of " + capText(subject, 200) + " can no longer be read"
	p.reply(b, r, meta, rep)
}

// EraseSubject sends the erasure of one aggregate (a command record of type
// EraseCommandType, its value an erasure token made with the master key w)
// with cl, any producing client, and returns the record once the broker has
// it. The processor answers on its default reply topic under commandID; to
// wait for the answer instead, send client.Command{Type: EraseCommandType,
// Avro: token} with a request/reply client, as `kcqrs erase --execute` does.
func EraseSubject(ctx context.Context, cl *kgo.Client, topics Topics, w shred.KeyWrapper, aggregateType, aggregateID, commandID string) (*kgo.Record, error) {
	topics.setDefaults()
	if aggregateType == "" || aggregateID == "" || strings.Contains(aggregateType, "/") {
		return nil, errors.New("topology: erase: need an aggregate type and id")
	}
	token, err := shred.EraseToken(w, subjectOf(aggregateType, aggregateID))
	if err != nil {
		return nil, fmt.Errorf("topology: erase: %w", err)
	}
	rec := &kgo.Record{
		Topic: topics.Commands,
		Key:   []byte(aggregateID),
		Value: token,
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandType, Value: []byte(EraseCommandType)},
			{Key: wire.HeaderAggregateType, Value: []byte(aggregateType)},
			{Key: wire.HeaderCommandID, Value: []byte(commandID)},
			{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeAvro)},
		},
	}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return nil, fmt.Errorf("topology: erase: %w", err)
	}
	return rec, nil
}
