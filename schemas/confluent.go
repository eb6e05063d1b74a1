package schemas

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/sr"
)

// Confluent translates between the single-object encoding and the Confluent
// Schema Registry wire format (a zero byte, the 4-byte big-endian schema id,
// then the same Avro binary body), for users who run a registry and want
// other Kafka tools to read the topics. Both formats frame the same body, so
// only the header changes: the codecs, resolution and upcasters work as
// without a registry, and a topic may hold both formats while it migrates.
//
// Schemas are registered under the record name strategy: the subject is the
// record's full name ("kcqrs.Event"), so one topic may carry several record
// types. Ids are looked up once per schema and cached; the registry's
// compatibility rules apply on top of this package's own (Upcasting.Check).
// It is safe for concurrent use.
type Confluent struct {
	cl     *sr.Client
	set    *Set
	header sr.ConfluentHeader

	mu     sync.Mutex
	idByFP map[uint64]int
	fpByID map[int]uint64
}

// NewConfluent returns a translator registering and resolving the schemas of
// set (merge every set the topics carry) in the registry cl talks to.
func NewConfluent(cl *sr.Client, set *Set) *Confluent {
	return &Confluent{cl: cl, set: set, idByFP: map[uint64]int{}, fpByID: map[int]uint64{}}
}

// IsConfluent reports whether data starts like the Confluent wire format
// rather than the single-object encoding.
func IsConfluent(data []byte) bool { return len(data) >= 5 && data[0] == 0 }

// FromSingleObject returns single-object encoded data in the Confluent wire
// format, registering the writer's schema (its .avsc source) under its
// record name the first time.
func (c *Confluent) FromSingleObject(ctx context.Context, data []byte) ([]byte, error) {
	fp, err := Fingerprint(data)
	if err != nil {
		return nil, err
	}
	id, err := c.id(ctx, fp)
	if err != nil {
		return nil, err
	}
	out, _ := c.header.AppendEncode(make([]byte, 0, len(data)-HeaderLen+5), id, nil)
	return append(out, data[HeaderLen:]...), nil
}

func (c *Confluent) id(ctx context.Context, fp uint64) (int, error) {
	c.mu.Lock()
	id, ok := c.idByFP[fp]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	codec, ok := c.set.ByFingerprint(fp)
	if !ok {
		return 0, &UnknownSchemaError{Fingerprint: fp}
	}
	ss, err := c.cl.CreateSchema(ctx, codec.Name(), sr.Schema{Schema: codec.Source(), Type: sr.TypeAvro})
	if err != nil {
		return 0, fmt.Errorf("schemas: registering %s v%d in the schema registry: %w", codec.Name(), codec.Version(), err)
	}
	c.remember(fp, ss.ID)
	return ss.ID, nil
}

func (c *Confluent) remember(fp uint64, id int) {
	c.mu.Lock()
	c.idByFP[fp] = id
	c.fpByID[id] = fp
	c.mu.Unlock()
}

// ToSingleObject returns Confluent wire format data in the single-object
// encoding. The schema of an id seen for the first time is fetched from the
// registry and must be one of the set's (any version): its fingerprint names
// it from then on. A schema the set does not know gives an
// *UnknownSchemaError with the id in its message.
func (c *Confluent) ToSingleObject(ctx context.Context, data []byte) ([]byte, error) {
	id, body, err := c.header.DecodeID(data)
	if err != nil {
		return nil, fmt.Errorf("schemas: not Confluent wire format: %w", err)
	}
	c.mu.Lock()
	fp, ok := c.fpByID[id]
	c.mu.Unlock()
	if !ok {
		s, err := c.cl.SchemaByID(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("schemas: schema id %d: %w", id, err)
		}
		if s.Type != sr.TypeAvro {
			return nil, fmt.Errorf("schemas: schema id %d is %s, not Avro", id, s.Type)
		}
		w, err := newCodec(fmt.Sprintf("schema registry id %d", id), []byte(s.Schema))
		if err != nil {
			return nil, err
		}
		if _, known := c.set.ByFingerprint(w.fp); !known {
			return nil, fmt.Errorf("schemas: schema id %d (%s): %w", id, w.name, &UnknownSchemaError{Fingerprint: w.fp})
		}
		fp = w.fp
		c.remember(fp, id)
	}
	h := singleObjectHeader(fp)
	out := make([]byte, 0, HeaderLen+len(body))
	return append(append(out, h[:]...), body...), nil
}

// Register makes sure the schemas with these fingerprints have ids,
// registering them under their record name where needed, so that
// FromSingleObject needs no registry call for them afterwards.
func (c *Confluent) Register(ctx context.Context, fps ...uint64) error {
	for _, fp := range fps {
		if _, err := c.id(ctx, fp); err != nil {
			return err
		}
	}
	return nil
}

// Known reports whether the schema of data (either format) is known
// without a registry call: always for the single-object encoding, and for
// the Confluent wire format once its id was looked up.
func (c *Confluent) Known(data []byte) bool {
	if !IsConfluent(data) {
		return true
	}
	id, _, err := c.header.DecodeID(data)
	if err != nil {
		return true // not a schema id: decoding reports it, without a lookup
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.fpByID[id]
	return ok
}
