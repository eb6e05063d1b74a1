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
	out := make([]byte, 0, len(Prefix)+len(subject)+1+KeyIDLen)
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
	raw := make([]byte, KeyIDLen+nonceLen, KeyIDLen+nonceLen+len(plaintext)+aead.Overhead())
	copy(raw, id[:])
	if _, err := rand.Read(raw[KeyIDLen:]); err != nil {
		return "", fmt.Errorf("shred: seal: %w", err)
	}
	raw = aead.Seal(raw, raw[KeyIDLen:], []byte(plaintext), aad(subject, id))
	var sb strings.Builder
	sb.Grow(len(Prefix) + b64.EncodedLen(len(raw)))
	sb.WriteString(Prefix)
	buf := make([]byte, b64.EncodedLen(len(raw)))
	b64.Encode(buf, raw)
	sb.Write(buf)
	return sb.String(), nil
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
