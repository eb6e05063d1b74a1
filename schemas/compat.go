package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Compatibility is what a change of schemas must keep readable, by the
// names of Confluent's Schema Registry.
type Compatibility string

const (
	// Backward: the current schemas (with their upcasters) read every
	// older version. New code reads old data; Register requires it.
	Backward Compatibility = "backward"
	// Forward: the previous release of each record (the newest version in
	// history/) reads data written with the current schema. Old code reads
	// new data, so a rollback, or an old worker inheriting a partition
	// during a rolling upgrade, keeps working.
	Forward Compatibility = "forward"
	// Full is Backward and Forward.
	Full Compatibility = "full"
)

// ParseCompatibility parses backward, forward or full (any case).
func ParseCompatibility(s string) (Compatibility, error) {
	switch c := Compatibility(strings.ToLower(strings.TrimSpace(s))); c {
	case Backward, Forward, Full:
		return c, nil
	}
	return "", fmt.Errorf("schemas: compatibility %q: want backward, forward or full", s)
}

// CheckCompatibility checks the set with its upcasters in mode, listing
// every problem. Forward fails for a record whose previous release cannot
// read the current schema's data (a field added without a default in the
// old schema's view, a type narrowed, ...), and for a record that only
// lives in history/ (renamed or split by an upcaster): older code never
// reads its successor.
func (u *Upcasting) CheckCompatibility(mode Compatibility) error {
	var errs []error
	if mode == Backward || mode == Full {
		if err := u.Check(); err != nil {
			errs = append(errs, err)
		}
	}
	if mode == Forward || mode == Full {
		for _, full := range sortedKeys(u.set.versions) {
			vs := u.set.versions[full]
			cur := u.set.current(full)
			if cur == nil {
				last := vs[len(vs)-1]
				errs = append(errs, fmt.Errorf("%s v%d (%s) has no current schema: the previous release cannot read what replaced it (forward compatibility)", full, last.version, last.file))
				continue
			}
			if len(vs) < 2 {
				continue // never changed since its first release
			}
			prev := vs[len(vs)-2]
			if err := prev.CanRead(cur); err != nil {
				errs = append(errs, fmt.Errorf("%s v%d (%s) cannot be read by the previous release v%d (%s), so a rollback would stall (forward compatibility):\n%w",
					full, cur.version, cur.file, prev.version, prev.file, err))
			}
		}
	}
	return errors.Join(errs...)
}

// CheckCompatibility is Upcasting().CheckCompatibility for a set without
// upcasters.
func (s *Set) CheckCompatibility(mode Compatibility) error {
	u, _ := s.Upcasting()
	return u.CheckCompatibility(mode)
}

// AckDropped is the record attribute that acknowledges fields dropped on
// purpose: "kcqrs.dropped": ["old"] in the current schema says the old
// field's values may be lost (see RenameWarnings).
const AckDropped = "kcqrs.dropped"

// RenameWarnings finds the changes that look like a rename without an alias:
// a record's current schema drops a field of its previous version and adds
// one with a default. Resolution then fills the new field with its default
// and the old values are lost without an error. Each such change needs
// either "aliases": ["old"] on the new field (a rename) or the record
// attribute "kcqrs.dropped": ["old"] (a deliberate drop).
func (s *Set) RenameWarnings() []string {
	var out []string
	for _, full := range sortedKeys(s.versions) {
		vs := s.versions[full]
		cur := s.current(full)
		if cur == nil || len(vs) < 2 || cur.schema.kind != kindRecord {
			continue
		}
		prev := vs[len(vs)-2]
		if prev.schema.kind != kindRecord {
			continue
		}
		acked := acknowledgedDrops(cur.source)
		inCur := map[string]bool{}
		for _, f := range cur.schema.fields {
			inCur[f.name] = true
			for _, a := range f.aliases {
				inCur[a] = true
			}
		}
		inPrev := map[string]bool{}
		var dropped []string
		for _, f := range prev.schema.fields {
			inPrev[f.name] = true
			if !inCur[f.name] && !slices.Contains(acked, f.name) {
				dropped = append(dropped, f.name)
			}
		}
		var added []string
		for _, f := range cur.schema.fields {
			if inPrev[f.name] || !f.hasDefault || slices.ContainsFunc(f.aliases, func(a string) bool { return inPrev[a] }) {
				continue
			}
			added = append(added, f.name)
		}
		if len(dropped) > 0 && len(added) > 0 {
			out = append(out, fmt.Sprintf("%s v%d (%s) drops %s of v%d and adds %s with a default: if that is a rename, give the new field \"aliases\": [\"<old name>\"], else the old values are lost; a deliberate drop is acknowledged with \"%s\": [%s] on the record",
				full, cur.version, cur.file, quoteAll(dropped), prev.version, quoteAll(added), AckDropped, quoteAll(dropped)))
		}
	}
	return out
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = `"` + n + `"`
	}
	return strings.Join(q, ", ")
}

// acknowledgedDrops reads the record attribute AckDropped of a schema file.
func acknowledgedDrops(source string) []string {
	var top map[string]json.RawMessage
	if json.Unmarshal([]byte(source), &top) != nil {
		return nil
	}
	var names []string
	_ = json.Unmarshal(top[AckDropped], &names)
	return names
}
