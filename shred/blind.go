package shred

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"
)

// Blind indexes (docs/erasure.md, "Looking up by a personal field"). A sealed
// field is ciphertext with a fresh nonce per write, so nothing can be found
// by its value. A blind index keys the lookup by a keyed hash instead:
// HMAC-SHA256 of the plaintext under a lookup key that only holders of the
// master key can compute. Whoever writes the index and whoever queries it
// compute the same name for the same value; a reader of the index without
// the key learns which entries share a value, not the value. A holder of
// the lookup key can test guesses (HMAC a candidate name and look for it):
// the threat model says so.

// LookupKeyer is implemented by a KeyWrapper that can give a lookup key for
// blind indexes. It is a separate interface so that a KeyWrapper written
// before it (a KMS adapter) still compiles; such a wrapper simply has no
// blind index. A KMS adapter can implement it with the KMS's own MAC of a
// fixed label (AWS KMS GenerateMac, Google Cloud KMS MacSign), computed once
// at start: the lookup key then never exists outside the process and the KMS.
type LookupKeyer interface {
	// LookupKey returns a secret key of at least 32 bytes for the blind
	// index named purpose: the same for every call, every process and
	// every restart with the same master key and purpose, and different
	// for another purpose or another master key.
	LookupKey(purpose string) ([]byte, error)
}

// ErrNoLookupKey is a KeyWrapper that does not implement LookupKeyer.
var ErrNoLookupKey = errors.New("shred: the master key gives no lookup key (its KeyWrapper does not implement shred.LookupKeyer)")

// lookupInfo labels the HKDF expansion of a lookup key.
const lookupInfo = "kcqrs lookup key v1\x00"

// LookupKey implements LookupKeyer: HKDF-SHA256 of the master key, with the
// purpose in the info, so the lookup key reveals nothing of the master key
// and one purpose's key nothing of another's.
func (m *MasterKey) LookupKey(purpose string) ([]byte, error) {
	k, err := hkdf.Expand(sha256.New, m.lookupPRK, lookupInfo+purpose, KeyLen)
	if err != nil {
		return nil, fmt.Errorf("shred: lookup key: %w", err)
	}
	return k, nil
}

// BlindIndex computes the names of one blind index: Sum(value) is the same
// for the same value and key, and is all a reader of the index sees. Safe
// for concurrent use.
type BlindIndex struct {
	purpose string
	pool    sync.Pool // of hash.Hash (HMAC under the lookup key)
}

// blindLen is how many bytes of the HMAC a name keeps: 128 bits, far beyond
// any chance of two values sharing a name, in 22 characters of text.
const blindLen = 16

// NewBlindIndex returns the blind index purpose under w's lookup key
// (ErrNoLookupKey when w has none).
func NewBlindIndex(w KeyWrapper, purpose string) (*BlindIndex, error) {
	lk, ok := w.(LookupKeyer)
	if !ok {
		return nil, ErrNoLookupKey
	}
	key, err := lk.LookupKey(purpose)
	if err != nil {
		return nil, err
	}
	if len(key) < KeyLen {
		return nil, fmt.Errorf("shred: the lookup key of %q has %d bytes, want at least %d", purpose, len(key), KeyLen)
	}
	key = append([]byte(nil), key...)
	b := &BlindIndex{purpose: purpose}
	b.pool.New = func() any { return hmac.New(sha256.New, key) }
	return b, nil
}

// Sum returns the index name of value: base64url (no padding) of the first
// 16 bytes of HMAC-SHA256(lookup key, value).
func (b *BlindIndex) Sum(value string) string {
	h := b.pool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(value))
	var sum [sha256.Size]byte
	out := h.Sum(sum[:0])
	b.pool.Put(h)
	return b64.EncodeToString(out[:blindLen])
}
