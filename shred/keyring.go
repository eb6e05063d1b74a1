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
	keys map[string]*Entry
	// erasures counts Delete calls: a reader that must act on erasures
	// (the projector drops owner-index entries) polls it.
	erasures atomic.Uint64
}

// Entry is what a keyring holds of one subject (a key, or its erasure), as
// Get found it: a caller that acts on a subject several times in a row (the
// processor's erasure check, key creation and seal of one command) looks it
// up once. An entry the keyring has since replaced or dropped (Put, Delete,
// Forget) is no longer Current, and SealEntry then looks the subject up
// again, so holding one never seals with an erased key.
type Entry struct {
	key    DataKey
	aead   cipher.AEAD
	erased bool // the keys topic holds the subject's erasure marker
	// gone is set once the keyring no longer holds this entry.
	gone atomic.Bool
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
func NewKeyring() *Keyring { return &Keyring{keys: map[string]*Entry{}} }

// Get returns subject's entry, nil when the keyring knows nothing of it.
func (r *Keyring) Get(subject string) *Entry { return r.entry(subject) }

// GetBytes is Get for a subject held in a buffer (no copy is made).
func (r *Keyring) GetBytes(subject []byte) *Entry {
	r.mu.RLock()
	e := r.keys[string(subject)]
	r.mu.RUnlock()
	return e
}

// Current reports whether the keyring still holds e (false for nil).
func (e *Entry) Current() bool { return e != nil && !e.gone.Load() }

// HasKey reports whether e is a key (not an erasure); false for nil.
func (e *Entry) HasKey() bool { return e != nil && !e.erased }

// Erased reports whether e is an erasure; false for nil.
func (e *Entry) Erased() bool { return e != nil && e.erased }

// replace sets subject's entry to e (nil: none), marking the old one gone;
// r.mu is held.
func (r *Keyring) replace(subject string, e *Entry) {
	if old := r.keys[subject]; old != nil {
		// Not cleared in place: a reader may hold old right now. It is
		// unreachable from the keyring from here on and left to the
		// collector.
		old.gone.Store(true)
		old.last.Store(nil)
	}
	if e == nil {
		delete(r.keys, subject)
	} else {
		r.keys[subject] = e
	}
}

// Put sets subject's key.
func (r *Keyring) Put(subject string, k DataKey) error {
	aead, err := gcm(&k)
	if err != nil {
		return fmt.Errorf("shred: key of %q: %w", subject, err)
	}
	r.mu.Lock()
	r.replace(subject, &Entry{key: k, aead: aead})
	r.mu.Unlock()
	return nil
}

// Delete erases subject: its key is dropped (and its bytes cleared) and the
// subject is remembered as erased, so its values open as Erased.
func (r *Keyring) Delete(subject string) {
	r.mu.Lock()
	r.replace(subject, &Entry{erased: true})
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
	r.replace(subject, nil)
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

func (r *Keyring) entry(subject string) *Entry {
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
	return r.sealEntry(r.entry(subject), subject, plaintext)
}

// SealEntry is Seal with e, subject's entry from Get: when e is no longer
// Current (nil included) the subject is looked up again.
func (r *Keyring) SealEntry(e *Entry, subject, plaintext string) (string, error) {
	if !e.Current() {
		e = r.entry(subject)
	}
	return r.sealEntry(e, subject, plaintext)
}

func (r *Keyring) sealEntry(e *Entry, subject, plaintext string) (string, error) {
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
