package schemas

import (
	"errors"
	"fmt"
	"slices"
)

// Record is a value in goavro's native form together with the record and
// schema version it conforms to: what an Upcaster reads and writes.
type Record struct {
	// Name is the record's short name, which is also its event type
	// ("MoneyDeposited").
	Name string
	// Version is the schema version Fields conforms to (see HistoryDir).
	Version int
	// Fields is the record in goavro's native form: long is int64, int
	// int32, string string, a union nil or map[branch]value, and so on.
	Fields map[string]any
}

// Upcaster reads a record of Name at Version and returns what it means at a
// later version: one record (a field's meaning changed), a record of another
// name (an event renamed), several (an event split in two), or none (an
// event dropped). Output records name the schema they conform to; that
// schema must be in the set. The output is upcast again and then resolved
// to the current schema of its name, so an upcaster only ever describes one
// step (version n to n+1) in the form of version n.
//
// Upcasters handle what the Avro specification's resolution cannot; a field
// added with a default, a field removed or a promoted type needs none.
type Upcaster struct {
	Name    string // short or full record name
	Version int
	Up      func(Record) ([]Record, error)
}

// UnknownSchemaError is returned for data whose fingerprint names no schema
// of the set, current or historical.
type UnknownSchemaError struct {
	Fingerprint uint64
}

func (e *UnknownSchemaError) Error() string {
	return fmt.Sprintf("schemas: no known schema has fingerprint %#016x (written by a newer or foreign producer?)", e.Fingerprint)
}

// Upcasting decodes data written with any known version of a set's records
// into records of their current schemas, applying upcasters on the way. It
// is immutable and safe for concurrent use.
type Upcasting struct {
	set *Set
	ups map[string][]Upcaster // by full name, ascending Version
}

// maxUpcastDepth bounds the chain, so that upcasters that feed each other in a
// loop give an error instead of running forever.
const maxUpcastDepth = 64

// Upcasting checks the upcasters against the set (every one must read a
// known record version, at most one per version, none at a current
// version) and returns the decoder.
func (s *Set) Upcasting(ups ...Upcaster) (*Upcasting, error) {
	u := &Upcasting{set: s, ups: map[string][]Upcaster{}}
	var errs []error
	for _, up := range ups {
		vs, err := s.Versions(up.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("upcaster %s v%d: %w", up.Name, up.Version, err))
			continue
		}
		if up.Up == nil {
			errs = append(errs, fmt.Errorf("upcaster %s v%d: nil Up", up.Name, up.Version))
			continue
		}
		full := vs[0].name
		if up.Version < 1 || up.Version > len(vs) {
			errs = append(errs, fmt.Errorf("upcaster %s v%d: %s has versions 1 to %d", up.Name, up.Version, full, len(vs)))
			continue
		}
		if cur := s.current(full); cur != nil && up.Version == cur.version {
			errs = append(errs, fmt.Errorf("upcaster %s v%d: that is the current version; add history/%s.v%d.avsc and a new current schema first",
				up.Name, up.Version, shortName(full), up.Version))
			continue
		}
		if slices.ContainsFunc(u.ups[full], func(o Upcaster) bool { return o.Version == up.Version }) {
			errs = append(errs, fmt.Errorf("upcaster %s v%d: registered twice", up.Name, up.Version))
			continue
		}
		u.ups[full] = append(u.ups[full], up)
	}
	for _, list := range u.ups {
		slices.SortFunc(list, func(a, b Upcaster) int { return a.Version - b.Version })
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("schemas: %w", err)
	}
	return u, nil
}

// Set returns the set the upcasting reads.
func (u *Upcasting) Set() *Set { return u.set }

// Decode reads single-object encoded data written with any known version of
// a record and returns its records in their current schemas. Unknown
// fingerprints give an *UnknownSchemaError.
func (u *Upcasting) Decode(data []byte) ([]Record, error) {
	fp, err := Fingerprint(data)
	if err != nil {
		return nil, err
	}
	w, ok := u.set.byFP[fp]
	if !ok {
		if lw, ok := u.set.learned.get(fp); ok {
			return u.decodeLearned(lw, data) // a newer build's (learn.go)
		}
		return nil, &UnknownSchemaError{Fingerprint: fp}
	}
	native, err := w.DecodeNative(data)
	if err != nil {
		return nil, err
	}
	fields, _ := native.(map[string]any)
	return u.Lift(Record{Name: w.short, Version: w.version, Fields: fields})
}

// Lift upcasts and resolves one record to the current schemas.
func (u *Upcasting) Lift(r Record) ([]Record, error) {
	var out []Record
	if err := u.lift(r, 0, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func (u *Upcasting) codec(name string, version int) (*Codec, error) {
	vs, err := u.set.Versions(name)
	if err != nil {
		return nil, err
	}
	if version < 1 || version > len(vs) {
		return nil, fmt.Errorf("schemas: %s has no version %d (1 to %d)", name, version, len(vs))
	}
	return vs[version-1], nil
}

func (u *Upcasting) lift(r Record, depth int, out *[]Record) error {
	if depth > maxUpcastDepth {
		return fmt.Errorf("schemas: upcasting %s v%d: more than %d steps; do upcasters feed each other in a loop?", r.Name, r.Version, maxUpcastDepth)
	}
	w, err := u.codec(r.Name, r.Version)
	if err != nil {
		return err
	}
	// The first upcaster at or after the record's version; the record is
	// first resolved to the version that upcaster reads.
	var up *Upcaster
	for i, cand := range u.ups[w.name] {
		if cand.Version >= r.Version {
			up = &u.ups[w.name][i]
			break
		}
	}
	if up == nil {
		cur := u.set.current(w.name)
		if cur == nil {
			return fmt.Errorf("schemas: %s v%d has no current schema and no upcaster reads it", w.name, r.Version)
		}
		native, err := cur.Resolve(w, r.Fields)
		if err != nil {
			return err
		}
		fields, _ := native.(map[string]any)
		*out = append(*out, Record{Name: cur.short, Version: cur.version, Fields: fields})
		return nil
	}
	at, err := u.codec(w.name, up.Version)
	if err != nil {
		return err
	}
	native, err := at.Resolve(w, r.Fields)
	if err != nil {
		return err
	}
	fields, _ := native.(map[string]any)
	next, err := up.Up(Record{Name: at.short, Version: at.version, Fields: fields})
	if err != nil {
		return fmt.Errorf("schemas: upcaster %s v%d: %w", at.name, at.version, err)
	}
	for _, n := range next {
		if n.Name == at.short && n.Version <= at.version {
			return fmt.Errorf("schemas: upcaster %s v%d returned version %d of the same record; it must move forward", at.name, at.version, n.Version)
		}
		if err := u.lift(n, depth+1, out); err != nil {
			return err
		}
	}
	return nil
}

// Check reports, for every record version that is not current, why data
// written with it would not be readable: no upcaster and no current schema,
// or a schema change the resolution rules cannot bridge to the next reader
// (the current schema, or the version the next upcaster reads). nil means
// every old version is readable (backward compatible).
func (u *Upcasting) Check() error {
	var errs []error
	for _, full := range sortedKeys(u.set.versions) {
		vs := u.set.versions[full]
		cur := u.set.current(full)
		for _, w := range vs {
			if w == cur {
				continue
			}
			reader := cur
			for _, up := range u.ups[full] {
				if up.Version >= w.version {
					reader = vs[up.Version-1]
					break
				}
			}
			if reader == nil {
				errs = append(errs, fmt.Errorf("%s v%d (%s): no current schema and no upcaster reads it", full, w.version, w.file))
				continue
			}
			if reader == w {
				continue
			}
			if err := reader.CanRead(w); err != nil {
				errs = append(errs, fmt.Errorf("%s v%d (%s) cannot be read as v%d (%s):\n%w", full, w.version, w.file, reader.version, reader.file, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Check is Upcasting().Check() for a set without upcasters: every older
// version of every record must resolve to its current schema.
func (s *Set) Check() error {
	u, _ := s.Upcasting()
	return u.Check()
}
