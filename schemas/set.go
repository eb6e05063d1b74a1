package schemas

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/linkedin/goavro/v2"
)

// Set is a collection of top-level record schemas, found by name or by
// fingerprint. It is immutable but for the writer schemas it learns (Learn),
// and safe for concurrent use.
type Set struct {
	codecs  []*Codec // sorted by full name
	byName  map[string]*Codec
	byShort map[string][]*Codec
	byFP    map[uint64]*Codec
	// versions holds every version of a record by full name, oldest first:
	// the history files, then the current codec if the record still exists.
	versions map[string][]*Codec
	// defs holds every named type defined in any file of the set, nested ones
	// included, to check that a type defined in two files is the same.
	defs map[string]definition
	// learned are writer schemas of newer builds (Learn): the one part of
	// a set that changes after Load.
	learned learned
}

type definition struct {
	file string
	form string // canonical form with defaults
}

// Load reads every *.avsc file in dir of fsys. A file holds one record schema
// and is self-contained: the named types it uses are defined inline, even
// when another file of the set defines them too (the definitions must then be
// identical, docs aside). Only the top-level records are in the set. Errors
// name the file.
//
// Fingerprints are computed from the Parsing Canonical Form of the Avro
// specification. goavro computes its own (Codec.Avro().Rabin), which is the
// same for ordinary schemas, the embedded ones included, but wrong for a
// "namespace" attribute on a nested type or a primitive with a known
// logicalType, and for a recursive reference by short name even varies from
// run to run with Go's map order. Prefer full names in references.
func Load(fsys fs.FS, dir string) (*Set, error) {
	files, err := fs.Glob(fsys, path.Join(dir, "*.avsc"))
	if err != nil {
		return nil, fmt.Errorf("schemas: %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("schemas: no .avsc files in %s", dir)
	}
	s := newSet()
	var errs []error
	for _, file := range files {
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
		if err := s.add(c); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := s.loadHistory(fsys, path.Join(dir, HistoryDir)); err != nil {
		return nil, err
	}
	s.finish()
	return s, nil
}

// Merge returns a set holding the records of all the given sets, such as the
// envelopes and every aggregate type's schemas, so one ByFingerprint finds any
// of them. The same record in two sets is an error unless both come from the
// same Codec.
func Merge(sets ...*Set) (*Set, error) {
	s := newSet()
	var errs []error
	for _, in := range sets {
		for _, c := range in.codecs {
			if s.byName[c.name] == c {
				continue
			}
			if err := s.add(c); err != nil {
				errs = append(errs, err)
			}
		}
		for name, vs := range in.versions {
			have := s.versions[name]
			switch {
			case len(have) > 0 && have[0] == vs[0]:
				continue // the same set merged twice
			case len(have) == 1 && have[0] == vs[len(vs)-1]:
				// add put the current codec in; now come its older versions.
			case len(have) > 0:
				errs = append(errs, fmt.Errorf("schemas: versions of %s are in two sets", name))
				continue
			}
			s.versions[name] = vs
			for _, c := range vs {
				if _, ok := s.byFP[c.fp]; !ok {
					s.byFP[c.fp] = c
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.finish()
	return s, nil
}

func newSet() *Set {
	return &Set{
		byName:   map[string]*Codec{},
		byShort:  map[string][]*Codec{},
		byFP:     map[uint64]*Codec{},
		versions: map[string][]*Codec{},
		defs:     map[string]definition{},
	}
}

func (s *Set) add(c *Codec) error {
	if prev, ok := s.byName[c.name]; ok {
		return fmt.Errorf("schemas: %s: record %s is already defined in %s", c.file, c.name, prev.file)
	}
	if prev, ok := s.byFP[c.Fingerprint()]; ok {
		return fmt.Errorf("schemas: %s: record %s has the fingerprint of %s (%s)", c.file, c.name, prev.name, prev.file)
	}
	var errs []error
	for _, name := range sortedKeys(c.defs) {
		form := c.defs[name]
		if prev, ok := s.defs[name]; ok && prev.form != form {
			errs = append(errs, fmt.Errorf("schemas: %s: %s differs from its definition in %s:\n\t%s\n\t%s", c.file, name, prev.file, form, prev.form))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for name, form := range c.defs {
		if _, ok := s.defs[name]; !ok {
			s.defs[name] = definition{file: c.file, form: form}
		}
	}
	s.versions[c.name] = append(s.versions[c.name], c)
	s.codecs = append(s.codecs, c)
	s.byName[c.name] = c
	s.byShort[c.short] = append(s.byShort[c.short], c)
	s.byFP[c.Fingerprint()] = c
	return nil
}

func (s *Set) finish() {
	slices.SortFunc(s.codecs, func(a, b *Codec) int { return strings.Compare(a.name, b.name) })
}

func newCodec(file string, text []byte) (*Codec, error) {
	ac, err := goavro.NewCodec(string(text))
	if err != nil {
		return nil, fmt.Errorf("schemas: %s: %w", file, err)
	}
	top, parser, err := parseSchema(text)
	if err != nil {
		return nil, fmt.Errorf("schemas: %s: %w", file, err)
	}
	if top.kind != kindRecord {
		return nil, fmt.Errorf("schemas: %s: holds a %s; a schema file must hold one record", file, top.describe())
	}
	if err := checkPersonal(top); err != nil {
		return nil, fmt.Errorf("schemas: %s: %w", file, err)
	}
	// The fingerprint is computed here from the specification's canonical
	// form rather than taken from goavro, whose canonical form is wrong for a
	// "namespace" attribute on a nested type or a primitive with a known
	// logicalType, and depends on Go's random map order for a recursive
	// reference by short name: such a fingerprint could change between runs
	// and would not match other Avro implementations'. For every other
	// schema, the embedded ones included, both agree (see the tests).
	pcf := canonical(top, false)
	fp := rabin([]byte(pcf))
	defs := make(map[string]string, len(parser.order))
	for _, t := range parser.order {
		defs[t.name] = canonical(t, true)
	}
	short := top.name
	if i := strings.LastIndexByte(short, '.'); i >= 0 {
		short = short[i+1:]
	}
	return &Codec{
		name:    top.name,
		short:   short,
		file:    file,
		source:  string(text),
		avro:    ac,
		schema:  top,
		pcf:     pcf,
		fp:      fp,
		header:  singleObjectHeader(fp),
		defs:    defs,
		version: 1,
	}, nil
}

// Codec returns the codec of a record by its full name
// ("kcqrs.example.account.Deposit") or, when that is unambiguous in the set,
// its short name ("Deposit").
func (s *Set) Codec(name string) (*Codec, error) {
	if c, ok := s.byName[name]; ok {
		return c, nil
	}
	switch cs := s.byShort[name]; len(cs) {
	case 1:
		return cs[0], nil
	case 0:
		return nil, fmt.Errorf("schemas: no record named %q (have %s)", name, strings.Join(s.Names(), ", "))
	default:
		names := make([]string, len(cs))
		for i, c := range cs {
			names[i] = c.name
		}
		slices.Sort(names)
		return nil, fmt.Errorf("schemas: record name %q is ambiguous: %s; use the full name", name, strings.Join(names, ", "))
	}
}

// ByFingerprint returns the codec whose schema has fingerprint fp.
func (s *Set) ByFingerprint(fp uint64) (*Codec, bool) {
	if c, ok := s.byFP[fp]; ok {
		return c, true
	}
	return s.learned.get(fp)
}

// Names returns the full names of the set's records, sorted.
func (s *Set) Names() []string {
	names := make([]string, len(s.codecs))
	for i, c := range s.codecs {
		names[i] = c.name
	}
	return names
}

// Codecs returns the set's codecs, sorted by full name.
func (s *Set) Codecs() []*Codec {
	return slices.Clone(s.codecs)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
