package schemas

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Learning a writer schema: a build meets data written by a newer build
// (after a rollback, or as an old worker in a rolling upgrade) whose schema
// is a newer version of one of its records. Under forward compatibility
// (CheckCompatibility(Forward)) the current schema reads that data by
// resolution; all it lacks is the writer schema, which the newer build
// publishes (the processor's schema topic, as Confluent's registry keeps its
// schemas in a topic). A learned schema is only ever read, never written,
// and has no version number among the release's history.

// ErrNotInSet: the schema's record is not a current record of the set.
var ErrNotInSet = errors.New("schemas: not a current record of this set")

// learned holds the writer schemas a Set learned, by fingerprint (rarely
// written, read only for data the set does not know otherwise).
type learned struct {
	mu sync.Mutex
	m  map[uint64]*Codec
}

func (l *learned) get(fp uint64) (*Codec, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.m[fp]
	return c, ok
}

// Learn adds a writer schema (a record schema's JSON text) whose data the
// set's current schema of the same record reads by resolution: a newer
// version written by a newer build. fp is the fingerprint the data named;
// the text must have it (a record of a schema topic under the wrong key is
// refused). It returns the learned codec; a schema the set already has is
// returned as it is. It refuses, naming why, a schema whose record is not a
// current record of the set (ErrNotInSet) and one the current schema cannot
// read (not forward compatible). Safe for concurrent use.
func (s *Set) Learn(fp uint64, text []byte) (*Codec, error) {
	c, err := newCodec("learned", text)
	if err != nil {
		return nil, err
	}
	if c.fp != fp {
		return nil, fmt.Errorf("schemas: the schema offered for fingerprint %#016x has fingerprint %#016x", fp, c.fp)
	}
	if have, ok := s.byFP[c.fp]; ok {
		return have, nil
	}
	if have, ok := s.learned.get(c.fp); ok {
		return have, nil
	}
	cur := s.byName[c.name]
	if cur == nil {
		return nil, fmt.Errorf("%w: %s (fingerprint %#016x)", ErrNotInSet, c.name, c.fp)
	}
	if err := cur.CanRead(c); err != nil {
		return nil, fmt.Errorf("schemas: %s with fingerprint %#016x cannot be read by the current schema (not forward compatible):\n%w", c.name, c.fp, err)
	}
	c.version = 0 // not a release of this build
	s.learned.mu.Lock()
	defer s.learned.mu.Unlock()
	if have, ok := s.learned.m[c.fp]; ok {
		return have, nil
	}
	if s.learned.m == nil {
		s.learned.m = map[uint64]*Codec{}
	}
	s.learned.m[c.fp] = c
	return c, nil
}

// Learned returns the writer schemas the set learned, by fingerprint.
func (s *Set) Learned() []*Codec {
	s.learned.mu.Lock()
	defer s.learned.mu.Unlock()
	out := slices.Collect(maps.Values(s.learned.m))
	slices.SortFunc(out, func(a, b *Codec) int {
		switch {
		case a.fp < b.fp:
			return -1
		case a.fp > b.fp:
			return 1
		}
		return 0
	})
	return out
}

// Known returns every schema of the set: current and history versions (not
// learned ones), ordered by full name and version. A build publishes them so
// that older builds can learn them.
func (s *Set) Known() []*Codec {
	out := slices.Collect(maps.Values(s.byFP))
	slices.SortFunc(out, func(a, b *Codec) int {
		if a.name != b.name {
			if a.name < b.name {
				return -1
			}
			return 1
		}
		return a.version - b.version
	})
	return out
}

// decodeLearned reads data written with a learned schema as the current
// schema of its record.
func (u *Upcasting) decodeLearned(w *Codec, data []byte) ([]Record, error) {
	cur := u.set.current(w.name)
	if cur == nil {
		return nil, fmt.Errorf("schemas: learned %s has no current schema", w.name)
	}
	native, err := w.DecodeNative(data)
	if err != nil {
		return nil, err
	}
	out, err := cur.Resolve(w, native)
	if err != nil {
		return nil, err
	}
	fields, _ := out.(map[string]any)
	return []Record{{Name: cur.short, Version: cur.version, Fields: fields}}, nil
}

// Learn is Set.Learn for the upcasting's set, refusing a record that has
// upcasters: a version outside history/ has no place in their chain, so
// resolving it straight to the current schema could skip a step that
// changes meaning. A record without upcasters is read that way whatever its
// version, as if its file were in history/.
func (u *Upcasting) Learn(fp uint64, text []byte) (*Codec, error) {
	c, err := newCodec("learned", text)
	if err != nil {
		return nil, err
	}
	if len(u.ups[c.name]) > 0 {
		if _, known := u.set.byFP[c.fp]; !known {
			return nil, fmt.Errorf("schemas: %s (fingerprint %#016x) has upcasters; a version outside history/ is not learned", c.name, c.fp)
		}
	}
	return u.set.Learn(fp, text)
}

// TextFingerprint returns the fingerprint of a schema's JSON text, or an
// error if the text is not a schema this package reads. A reader of a schema
// topic checks it against the record's key before keeping the text: a later
// record under the same key with another text must not hide the real one.
func TextFingerprint(text []byte) (uint64, error) {
	c, err := newCodec("text", text)
	if err != nil {
		return 0, err
	}
	return c.fp, nil
}
