package shred

import (
	"errors"
	"fmt"
)

// The keys topic holds one record per subject, keyed by the subject; its
// value (EncodeKeyRecord) is
//
//	"kcqrs-key1" | len(wrapper id) (1 byte) | wrapper id | key id (8) | wrapped key
//
// and the erasure marker (ErasedMarker) erases the subject. A tombstone
// (nil value) forgets a key (a subject erased before it stays erased).
const keyRecordMagic = "kcqrs-key1"

// WrongMasterKeyError is a key record wrapped by another master key than the
// configured one, or one whose wrapped key does not open with it. It stops a
// start: treating such keys as erased would turn every personal field into
// "[erased]" without a word.
type WrongMasterKeyError struct {
	Subject string
	Stored  string // the master key id in the record
	Have    string // the configured master key id
	Err     error  // the unwrap error, when the ids agree
}

func (e *WrongMasterKeyError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("shred: the data key of %q does not open with master key %s: %v (wrong or corrupted master key?)", e.Subject, e.Have, e.Err)
	}
	return fmt.Sprintf("shred: the data key of %q was wrapped by master key %s, but the configured master key is %s (configure the master key the keys were written with)", e.Subject, e.Stored, e.Have)
}

func (e *WrongMasterKeyError) Unwrap() error { return e.Err }

// ErrBadKeyRecord is a keys-topic value that is not a key record.
var ErrBadKeyRecord = errors.New("shred: not a key record")

// EncodeKeyRecord wraps k for subject and returns the keys-topic value.
func EncodeKeyRecord(w KeyWrapper, subject string, k DataKey) ([]byte, error) {
	wrapped, err := w.Wrap(subject, k.Key[:])
	if err != nil {
		return nil, err
	}
	id := w.ID()
	if len(id) > 255 {
		return nil, fmt.Errorf("shred: master key id longer than 255 bytes")
	}
	out := make([]byte, 0, len(keyRecordMagic)+1+len(id)+KeyIDLen+len(wrapped))
	out = append(out, keyRecordMagic...)
	out = append(out, byte(len(id)))
	out = append(out, id...)
	out = append(out, k.ID[:]...)
	return append(out, wrapped...), nil
}

// DecodeKeyRecord unwraps a keys-topic value of subject. A record of another
// master key, or one that does not open, is a *WrongMasterKeyError.
func DecodeKeyRecord(w KeyWrapper, subject string, value []byte) (DataKey, error) {
	var k DataKey
	rest, ok := cutPrefix(value, keyRecordMagic)
	if !ok || len(rest) < 1 {
		return k, ErrBadKeyRecord
	}
	n := int(rest[0])
	rest = rest[1:]
	if len(rest) < n+KeyIDLen {
		return k, ErrBadKeyRecord
	}
	stored := string(rest[:n])
	rest = rest[n:]
	copy(k.ID[:], rest[:KeyIDLen])
	rest = rest[KeyIDLen:]
	if stored != w.ID() {
		return k, &WrongMasterKeyError{Subject: subject, Stored: stored, Have: w.ID()}
	}
	key, err := w.Unwrap(subject, rest)
	if err != nil {
		return k, &WrongMasterKeyError{Subject: subject, Stored: stored, Have: w.ID(), Err: err}
	}
	if len(key) != KeyLen {
		return k, fmt.Errorf("shred: the data key of %q has %d bytes", subject, len(key))
	}
	copy(k.Key[:], key)
	clear(key)
	return k, nil
}

func cutPrefix(b []byte, p string) ([]byte, bool) {
	if len(b) < len(p) || string(b[:len(p)]) != p {
		return nil, false
	}
	return b[len(p):], true
}

// ErasedMarker is the keys-topic value of an erased subject. It replaces the
// key record (compaction keeps only the latest value per key, so the wrapped
// key is gone from the log once the partition is compacted) and, unlike a
// tombstone, which compaction removes after delete.retention.ms, it stays:
// every worker, now and after any restore, knows the subject is erased, and
// "erased" is never inferred from a key that is merely missing.
var ErasedMarker = []byte("kcqrs-erased1")

// IsErasedMarker reports whether a keys-topic value is the erasure marker.
func IsErasedMarker(v []byte) bool { return string(v) == string(ErasedMarker) }

// eraseTokenText is what an erasure token seals.
const eraseTokenText = "kcqrs-erase1"

// EraseToken returns the value of an erasure command for subject: a short
// text sealed by the master key with the subject as additional data. Only a
// holder of the master key (or of the KMS behind w) can make one, so a client
// that may merely send commands cannot erase anybody; a token names its
// subject and erases no other.
func EraseToken(w KeyWrapper, subject string) ([]byte, error) {
	sealed, err := w.Wrap("erase:"+subject, []byte(eraseTokenText))
	if err != nil {
		return nil, err
	}
	// A fixed prefix: random bytes starting with '{' would look like JSON
	// to the processor's content check.
	return append([]byte(eraseTokenPrefix), sealed...), nil
}

const eraseTokenPrefix = "kcqrs-erase-token:"

// ErrBadEraseToken is an erasure command whose value is not an erasure token
// of the configured master key for its subject.
var ErrBadEraseToken = errors.New("shred: not an erasure token of this master key for this subject")

// CheckEraseToken checks an erasure command's value (EraseToken).
func CheckEraseToken(w KeyWrapper, subject string, token []byte) error {
	token, ok := cutPrefix(token, eraseTokenPrefix)
	if !ok {
		return ErrBadEraseToken
	}
	got, err := w.Unwrap("erase:"+subject, token)
	if err != nil || string(got) != eraseTokenText {
		return ErrBadEraseToken
	}
	return nil
}
