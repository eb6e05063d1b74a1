package snapshots

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// keySource holds the identity of the changelog the store was restored
// from (a Kafka topic id), so a changelog deleted and recreated under the
// same name is told apart from the one the checkpoint refers to, even when
// the new one already grew past the checkpoint.
var keySource = []byte{metaPrefix, 's', 'o', 'u', 'r', 'c', 'e'}

// Source returns the changelog identity recorded with SetSource, ok=false if
// none was (a new store, or one older than the record).
func (s *Store) Source() (id []byte, ok bool, err error) {
	if !s.gate.enter() {
		return nil, false, ErrClosed
	}
	defer s.gate.exit()
	v, closer, err := s.db.Get(keySource)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("snapshots: source: %w", err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}

// SetSource records the identity of the changelog the store reflects. Wipe
// keeps it: the caller sets the new one after a wipe.
func (s *Store) SetSource(id []byte) error {
	if !s.gate.enter() {
		return ErrClosed
	}
	defer s.gate.exit()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.db.Set(keySource, id, pebble.NoSync); err != nil {
		return fmt.Errorf("snapshots: set source: %w", err)
	}
	return nil
}
