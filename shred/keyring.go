package shred

import (
	"crypto/cipher"
	"fmt"
	"sync"
)

// Keyring holds data keys by subject in memory, each with its cipher ready.
// It is safe for concurrent use.
type Keyring struct {
	mu   sync.RWMutex
	keys map[string]*ringEntry
}

type ringEntry struct {
	key  DataKey
	aead cipher.AEAD
}

// NewKeyring returns an empty keyring.
func NewKeyring() *Keyring { return &Keyring{keys: map[string]*ringEntry{}} }

// Put sets subject's key.
func (r *Keyring) Put(subject string, k DataKey) error {
	aead, err := gcm(&k)
	if err != nil {
		return fmt.Errorf("shred: key of %q: %w", subject, err)
	}
	r.mu.Lock()
	r.keys[subject] = &ringEntry{key: k, aead: aead}
	r.mu.Unlock()
	return nil
}

// Delete drops subject's key (its erasure, once applied).
func (r *Keyring) Delete(subject string) {
	r.mu.Lock()
	if e := r.keys[subject]; e != nil {
		clear(e.key.Key[:])
		delete(r.keys, subject)
	}
	r.mu.Unlock()
}

// Has reports whether subject has a key.
func (r *Keyring) Has(subject string) bool {
	r.mu.RLock()
	_, ok := r.keys[subject]
	r.mu.RUnlock()
	return ok
}

// Len is the number of keys held.
func (r *Keyring) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.keys)
}

func (r *Keyring) entry(subject string) *ringEntry {
	r.mu.RLock()
	e := r.keys[subject]
	r.mu.RUnlock()
	return e
}

// Lookup returns the keyring as a Lookup.
func (r *Keyring) Lookup(subject string) (*DataKey, bool) {
	if e := r.entry(subject); e != nil {
		k := e.key
		return &k, true
	}
	return nil, false
}

// Seal encrypts plaintext with subject's key; the subject must have one.
func (r *Keyring) Seal(subject, plaintext string) (string, error) {
	e := r.entry(subject)
	if e == nil {
		return "", fmt.Errorf("shred: seal: no key for %q", subject)
	}
	return sealWith(e.aead, subject, e.key.ID, plaintext)
}

// Open is the package's Open with this keyring's keys.
func (r *Keyring) Open(subject, s string) (string, error) {
	if !IsSealed(s) {
		return s, nil
	}
	id, nonce, ct, err := parseEnvelope(s)
	if err != nil {
		return "", err
	}
	e := r.entry(subject)
	if e == nil {
		return Erased, ErrErased
	}
	if e.key.ID != id {
		return "", fmt.Errorf("%w: written with key %x, the subject's key is %x", ErrMalformed, id, e.key.ID)
	}
	pt, err := e.aead.Open(nil, nonce, ct, aad(subject, id))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return string(pt), nil
}
