package shred

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Keyring holds data keys by subject in memory, each with its cipher ready.
// It is safe for concurrent use.
type Keyring struct {
	mu   sync.RWMutex
	keys map[string]*ringEntry
	// erasures counts Delete calls: a reader that must act on erasures
	// (the projector drops owner-index entries) polls it.
	erasures atomic.Uint64
}

type ringEntry struct {
	key    DataKey
	aead   cipher.AEAD
	erased bool // the keys topic holds the subject's erasure marker
	// last is the latest (plaintext, envelope) pair sealed or opened with
	// this key. A state is sealed again for every snapshot while its
	// personal fields rarely change: handing out the same envelope for
	// the same plaintext and key is as safe as storing it once (no nonce
	// is reused for another plaintext) and saves the cipher work.
	last atomic.Pointer[sealPair]
}

type sealPair struct{ plain, sealed string }

// ErrNoKey is a sealed value of a subject the keyring knows nothing of:
// neither a key nor an erasure. It is an error, never "erased": the keys
// may not be loaded yet, or were lost, and saying "erased" would hide that.
var ErrNoKey = errors.New("shred: no key for the subject (keys not loaded?)")

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

// Delete erases subject: its key is dropped (and its bytes cleared) and the
// subject is remembered as erased, so its values open as Erased.
func (r *Keyring) Delete(subject string) {
	r.mu.Lock()
	if e := r.keys[subject]; e != nil {
		// Not cleared in place: a reader may hold e right now. The entry
		// is unreachable from here on and left to the collector.
		e.last.Store(nil)
	}
	r.keys[subject] = &ringEntry{erased: true}
	r.mu.Unlock()
	r.erasures.Add(1)
}

// Erasures counts the erasures (Delete calls) so far: it changes whenever a
// subject was erased since it was last read.
func (r *Keyring) Erasures() uint64 { return r.erasures.Load() }

// Forget drops everything known of subject (a key or an erasure), as if it
// had never been loaded: for state of a transaction that did not commit.
func (r *Keyring) Forget(subject string) {
	r.mu.Lock()
	if e := r.keys[subject]; e != nil {
		e.last.Store(nil)
		delete(r.keys, subject)
	}
	r.mu.Unlock()
}

// Has reports whether subject has a key (not erased).
func (r *Keyring) Has(subject string) bool {
	e := r.entry(subject)
	return e != nil && !e.erased
}

// Erased reports whether subject was erased.
func (r *Keyring) Erased(subject string) bool {
	e := r.entry(subject)
	return e != nil && e.erased
}

// Len is the number of subjects known (with a key or erased).
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
	if e := r.entry(subject); e != nil && !e.erased {
		k := e.key
		return &k, true
	}
	return nil, false
}

// Seal encrypts plaintext with subject's key; the subject must have one.
func (r *Keyring) Seal(subject, plaintext string) (string, error) {
	e := r.entry(subject)
	if e != nil && e.erased {
		// An erased subject's personal data is never stored again, in any
		// form: what is written in its place is the erased value itself.
		return Erased, nil
	}
	if e == nil {
		return "", fmt.Errorf("shred: seal: no key for %q", subject)
	}
	if l := e.last.Load(); l != nil && l.plain == plaintext {
		return l.sealed, nil
	}
	s, err := sealWith(e.aead, subject, e.key.ID, plaintext)
	if err == nil {
		e.last.Store(&sealPair{plain: plaintext, sealed: s})
	}
	return s, err
}

// Open is the package's Open with this keyring's keys, except that a
// subject the keyring knows nothing of is ErrNoKey: only an erasure it was
// told of (Delete) gives Erased.
func (r *Keyring) Open(subject, s string) (string, error) {
	if !IsSealed(s) {
		return s, nil
	}
	e := r.entry(subject)
	if e != nil && !e.erased {
		if l := e.last.Load(); l != nil && l.sealed == s {
			return l.plain, nil
		}
	}
	id, err := envelopeID(s)
	if err != nil {
		return "", err
	}
	if e == nil {
		return "", fmt.Errorf("%w: %q", ErrNoKey, subject)
	}
	if e.erased {
		return Erased, ErrErased
	}
	if e.key.ID != id {
		return "", fmt.Errorf("%w: written with key %x, the subject's key is %x", ErrMalformed, id, e.key.ID)
	}
	pt, err := openWith(e.aead, subject, id, s)
	if err != nil {
		return "", err
	}
	e.last.Store(&sealPair{plain: pt, sealed: s})
	return pt, nil
}
