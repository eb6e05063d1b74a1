package schemas

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
)

// HistoryDir is the subdirectory of a schema directory that keeps every
// released version of its records: history/Deposit.v1.avsc,
// history/Deposit.v2.avsc, ..., while Deposit.avsc is the current version
// (one more than the highest in history/). A record that no longer exists
// (an event renamed or split) keeps only its history/ files, and old data of
// it is read through an upcaster. Files in history/ are never edited or
// deleted once released: records on Kafka name them by fingerprint.
const HistoryDir = "history"

var historyName = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\.v([1-9][0-9]*)\.avsc$`)

// loadHistory reads dir/*.avsc of fsys (if dir exists) as older versions of
// the set's records and lets each current codec decode them.
func (s *Set) loadHistory(fsys fs.FS, dir string) error {
	files, err := fs.Glob(fsys, path.Join(dir, "*.avsc"))
	if err != nil {
		return fmt.Errorf("schemas: %s: %w", dir, err)
	}
	var errs []error
	old := map[string][]*Codec{}
	for _, file := range files {
		m := historyName.FindStringSubmatch(path.Base(file))
		if m == nil {
			errs = append(errs, fmt.Errorf("schemas: %s: a history file is named Record.vN.avsc (N >= 1)", file))
			continue
		}
		version, err := strconv.Atoi(m[2])
		if err != nil {
			errs = append(errs, fmt.Errorf("schemas: %s: version: %w", file, err))
			continue
		}
		text, err := fs.ReadFile(fsys, file)
		if err != nil {
			errs = append(errs, fmt.Errorf("schemas: %w", err))
			continue
		}
		c, err := newCodec(file, text)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if c.short != m[1] {
			errs = append(errs, fmt.Errorf("schemas: %s: holds record %s, but the file name says %s", file, c.name, m[1]))
			continue
		}
		c.version = version
		old[c.name] = append(old[c.name], c)
	}
	for _, name := range sortedKeys(old) {
		vs := old[name]
		slices.SortFunc(vs, func(a, b *Codec) int { return a.version - b.version })
		for i, c := range vs {
			if c.version != i+1 {
				errs = append(errs, fmt.Errorf("schemas: %s: versions of %s must be 1, 2, 3, ... without gaps or repeats", c.file, name))
				break
			}
		}
		cur := s.byName[name]
		if cur != nil {
			cur.version = len(vs) + 1
			cur.older = make(map[uint64]*Codec, len(vs))
			for _, c := range vs {
				if c.fp != cur.fp {
					cur.older[c.fp] = c // the newest version of a fingerprint wins
				}
			}
			vs = append(vs, cur)
		}
		s.versions[name] = vs
		for _, c := range vs {
			s.byFP[c.fp] = c // ascending, so the newest version of a fingerprint wins
		}
	}
	return errors.Join(errs...)
}

// Version returns the record's schema version: 1 + the number of its files
// in history/ for a current record, N for history/Name.vN.avsc.
func (c *Codec) Version() int { return c.version }

// File returns the path of the codec's .avsc file in its file system.
func (c *Codec) File() string { return c.file }

// Versions returns every version of a record (full name or unambiguous short
// name), oldest first; the last is the current one unless the record only
// lives in history/ (renamed or split).
func (s *Set) Versions(name string) ([]*Codec, error) {
	if vs, ok := s.versions[name]; ok {
		return slices.Clone(vs), nil
	}
	var found []string
	for full := range s.versions {
		if shortName(full) == name {
			found = append(found, full)
		}
	}
	switch len(found) {
	case 1:
		return slices.Clone(s.versions[found[0]]), nil
	case 0:
		return nil, fmt.Errorf("schemas: no record named %q", name)
	}
	slices.Sort(found)
	return nil, fmt.Errorf("schemas: record name %q is ambiguous: %v; use the full name", name, found)
}

// current returns the current codec of a record's full name, nil if it only
// lives in history/.
func (s *Set) current(full string) *Codec { return s.byName[full] }

// resolverFrom returns the cached resolver of writer w's data read as c.
func (c *Codec) resolverFrom(w *Codec) (*resolver, []error) {
	if r, ok := c.resolvers.Load(w); ok {
		rr := r.(*cachedResolver)
		return rr.res, rr.problems
	}
	res, problems := newResolver(w.schema, c.schema)
	r, _ := c.resolvers.LoadOrStore(w, &cachedResolver{res: res, problems: problems})
	rr := r.(*cachedResolver)
	return rr.res, rr.problems
}

type cachedResolver struct {
	res      *resolver
	problems []error
}

// Resolve converts a native value of writer w's schema into the native form
// of c's schema by the Avro specification's resolution rules.
func (c *Codec) Resolve(w *Codec, native any) (any, error) {
	if w == c {
		return native, nil
	}
	res, _ := c.resolverFrom(w)
	out, err := res.fn(native)
	if err != nil {
		return nil, fmt.Errorf("%s v%d read as v%d: %w", c.name, w.version, c.version, err)
	}
	return out, nil
}

// CanRead reports every reason why c cannot read all data written with w's
// schema (nil: backward compatible).
func (c *Codec) CanRead(w *Codec) error {
	_, problems := c.resolverFrom(w)
	return errors.Join(problems...)
}
