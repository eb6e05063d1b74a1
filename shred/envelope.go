package shred

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Prefix starts every encrypted field's text.
const Prefix = "kcqrs:p1:"

// Erased is what a personal field of an erased subject decodes to.
const Erased = "[erased]"

const nonceLen = 12

// ErrErased is returned by Open for a value whose subject's key has been
// destroyed; the value returned with it is Erased.
var ErrErased = errors.New("shred: the subject's key was erased")

// ErrMalformed is an envelope that cannot be parsed or does not open with
// its subject's key.
var ErrMalformed = errors.New("shred: malformed encrypted value")

var b64 = base64.RawURLEncoding

func aad(subject string, id [KeyIDLen]byte) []byte {
	return appendAAD(make([]byte, 0, len(Prefix)+len(subject)+1+KeyIDLen), subject, id)
}

func appendAAD(out []byte, subject string, id [KeyIDLen]byte) []byte {
	out = append(out, Prefix...)
	out = append(out, subject...)
	out = append(out, 0)
	return append(out, id[:]...)
}

func gcm(k *DataKey) (cipher.AEAD, error) {
	block, err := aes.NewCipher(k.Key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plaintext for subject with its key k and returns the
// envelope text.
func Seal(subject string, k *DataKey, plaintext string) (string, error) {
	aead, err := gcm(k)
	if err != nil {
		return "", fmt.Errorf("shred: seal: %w", err)
	}
	return sealWith(aead, subject, k.ID, plaintext)
}

func sealWith(aead cipher.AEAD, subject string, id [KeyIDLen]byte, plaintext string) (string, error) {
	// One buffer for everything: the additional data, then the plaintext
	// (sealed in place into the raw envelope: key id, nonce, ciphertext),
	// then the text; only the final string is another allocation.
	ad := len(Prefix) + len(subject) + 1 + KeyIDLen
	n := KeyIDLen + nonceLen + len(plaintext) + aead.Overhead()
	text := len(Prefix) + b64.EncodedLen(n)
	buf := make([]byte, ad+n+text)
	a := appendAAD(buf[:0], subject, id)
	raw := buf[ad : ad+n]
	copy(raw, id[:])
	nonce := raw[KeyIDLen : KeyIDLen+nonceLen]
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("shred: seal: %w", err)
	}
	pt := raw[KeyIDLen+nonceLen : KeyIDLen+nonceLen+len(plaintext)]
	copy(pt, plaintext)
	aead.Seal(pt[:0], nonce, pt, a)
	out := buf[ad+n:]
	copy(out, Prefix)
	b64.Encode(out[len(Prefix):], raw)
	return string(out), nil
}

// IsSealed reports whether s is envelope text (it starts with Prefix).
func IsSealed(s string) bool { return strings.HasPrefix(s, Prefix) }

// Lookup finds a subject's key: ok false means the subject has no key (never
// had one, or it was erased).
type Lookup func(subject string) (k *DataKey, ok bool)

// Open decrypts envelope text s of subject. Text without Prefix is returned
// unchanged (written before the field was marked). A subject without a key
// gives Erased and ErrErased; a key with another id, bad text or a failed
// authentication give ErrMalformed (wrapped), never Erased.
func Open(subject string, lookup Lookup, s string) (string, error) {
	if !IsSealed(s) {
		return s, nil
	}
	id, nonce, ct, err := parseEnvelope(s)
	if err != nil {
		return "", err
	}
	k, ok := lookup(subject)
	if !ok {
		return Erased, ErrErased
	}
	if k.ID != id {
		return "", fmt.Errorf("%w: written with key %x, the subject's key is %x", ErrMalformed, id, k.ID)
	}
	aead, err := gcm(k)
	if err != nil {
		return "", fmt.Errorf("shred: open: %w", err)
	}
	pt, err := aead.Open(nil, nonce, ct, aad(subject, id))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return string(pt), nil
}

// openWith decrypts envelope text s of subject, whose key id is id, with
// aead: the additional data and the decoded envelope share one buffer, and
// the plaintext is opened in place.
func openWith(aead cipher.AEAD, subject string, id [KeyIDLen]byte, s string) (string, error) {
	enc := s[len(Prefix):]
	ad := len(Prefix) + len(subject) + 1 + KeyIDLen
	buf := make([]byte, ad+b64.DecodedLen(len(enc)))
	a := appendAAD(buf[:0], subject, id)
	n, err := b64.Decode(buf[ad:], []byte(enc))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	raw := buf[ad : ad+n]
	if len(raw) < KeyIDLen+nonceLen+16 {
		return "", fmt.Errorf("%w: %d bytes", ErrMalformed, len(raw))
	}
	ct := raw[KeyIDLen+nonceLen:]
	pt, err := aead.Open(ct[:0], raw[KeyIDLen:KeyIDLen+nonceLen], ct, a)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return string(pt), nil
}

// envelopeID reads the key id of envelope text s (which has Prefix) without
// decoding the rest: the first 12 characters hold it. The rest is checked
// by openWith.
func envelopeID(s string) (id [KeyIDLen]byte, err error) {
	enc := s[len(Prefix):]
	if len(enc) < b64.EncodedLen(KeyIDLen+nonceLen+16) {
		return id, fmt.Errorf("%w: %d characters", ErrMalformed, len(enc))
	}
	var head [9]byte
	if _, err := b64.Decode(head[:], []byte(enc[:12])); err != nil {
		return id, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	copy(id[:], head[:])
	return id, nil
}

// parseEnvelope splits envelope text into key id, nonce and ciphertext.
func parseEnvelope(s string) (id [KeyIDLen]byte, nonce, ct []byte, err error) {
	raw, derr := b64.DecodeString(s[len(Prefix):])
	if derr != nil {
		return id, nil, nil, fmt.Errorf("%w: %v", ErrMalformed, derr)
	}
	if len(raw) < KeyIDLen+nonceLen+16 {
		return id, nil, nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(raw))
	}
	copy(id[:], raw)
	return id, raw[KeyIDLen : KeyIDLen+nonceLen], raw[KeyIDLen+nonceLen:], nil
}

// EnvelopeKeyID returns the key id an envelope was written with.
func EnvelopeKeyID(s string) ([KeyIDLen]byte, error) {
	if !IsSealed(s) {
		return [KeyIDLen]byte{}, fmt.Errorf("%w: no %q prefix", ErrMalformed, Prefix)
	}
	id, _, _, err := parseEnvelope(s)
	return id, err
}
