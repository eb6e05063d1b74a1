package shred

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// KeyLen is the length of a data key and of the master key: AES-256.
const KeyLen = 32

// KeyIDLen is the length of a data key's id.
const KeyIDLen = 8

// DataKey is one subject's key.
type DataKey struct {
	ID  [KeyIDLen]byte
	Key [KeyLen]byte
}

// redacted is how a data key prints: its id, never its key bytes.
func (k DataKey) redacted() string { return fmt.Sprintf("shred.DataKey{ID:%x Key:redacted}", k.ID) }

// Format prints the id only, for every verb: a key that reaches a log line
// or an error message by mistake does not leak.
func (k DataKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.redacted()) }

// LogValue is the id only (log/slog).
func (k DataKey) LogValue() slog.Value { return slog.StringValue(k.redacted()) }

// MarshalJSON is the id only: a key is never serialized by accident (the
// keys topic holds it wrapped by the master key, EncodeKeyRecord).
func (k DataKey) MarshalJSON() ([]byte, error) { return json.Marshal(k.redacted()) }

// NewDataKey returns a fresh random data key.
func NewDataKey() (DataKey, error) {
	var k DataKey
	if _, err := rand.Read(k.ID[:]); err != nil {
		return k, fmt.Errorf("shred: new data key: %w", err)
	}
	if _, err := rand.Read(k.Key[:]); err != nil {
		return k, fmt.Errorf("shred: new data key: %w", err)
	}
	return k, nil
}

// KeyWrapper seals data keys for storage: the master key. Implementations
// must be safe for concurrent use. Unwrap of data wrapped by another master
// key must fail (an authenticated cipher does); subject is additional data
// bound to the wrapped key, so a wrapped key cannot be moved to another subject.
type KeyWrapper interface {
	// ID names the master key; it is stored with every wrapped key, so a
	// key wrapped by another master key is recognised as such.
	ID() string
	Wrap(subject string, dataKey []byte) ([]byte, error)
	Unwrap(subject string, wrapped []byte) ([]byte, error)
}

// MasterKey is the built-in KeyWrapper: AES-256-GCM with a 32-byte key.
type MasterKey struct {
	aead cipher.AEAD
	id   string
	// lookupPRK is the HKDF pseudorandom key of the lookup keys (blind.go),
	// extracted at construction: the master key itself is not kept.
	lookupPRK []byte
}

// NewMasterKey returns the wrapper of a 32-byte master key.
func NewMasterKey(key []byte) (*MasterKey, error) {
	if len(key) != KeyLen {
		return nil, fmt.Errorf("shred: a master key has %d bytes, got %d", KeyLen, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("shred: master key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("shred: master key: %w", err)
	}
	// The id is a hash of the key under a fixed label: it names the key
	// without revealing it.
	sum := sha256.Sum256(append([]byte("kcqrs master key id\x00"), key...))
	prk, err := hkdf.Extract(sha256.New, key, []byte("kcqrs lookup"))
	if err != nil {
		return nil, fmt.Errorf("shred: master key: %w", err)
	}
	return &MasterKey{aead: aead, id: "mk-" + hex.EncodeToString(sum[:6]), lookupPRK: prk}, nil
}

// ID implements KeyWrapper.
func (m *MasterKey) ID() string { return m.id }

// Wrap implements KeyWrapper: nonce | ciphertext.
func (m *MasterKey) Wrap(subject string, dataKey []byte) ([]byte, error) {
	out := make([]byte, m.aead.NonceSize(), m.aead.NonceSize()+len(dataKey)+m.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("shred: wrap: %w", err)
	}
	return m.aead.Seal(out, out, dataKey, []byte("kcqrs:key:"+subject)), nil
}

// Unwrap implements KeyWrapper.
func (m *MasterKey) Unwrap(subject string, wrapped []byte) ([]byte, error) {
	n := m.aead.NonceSize()
	if len(wrapped) < n+m.aead.Overhead() {
		return nil, errors.New("shred: unwrap: wrapped key too short")
	}
	key, err := m.aead.Open(nil, wrapped[:n], wrapped[n:], []byte("kcqrs:key:"+subject))
	if err != nil {
		return nil, fmt.Errorf("shred: unwrap the key of %q with master key %s: %w", subject, m.id, err)
	}
	return key, nil
}

// MasterKeyEnv is the environment variable LoadMasterKey reads when no file
// is given.
const MasterKeyEnv = "KCQRS_MASTER_KEY"

// LoadMasterKey reads a master key: from file when file is not empty, else
// from the environment variable MasterKeyEnv. The text is the 32 bytes in
// hex (64 digits) or standard base64; surrounding white space is ignored.
func LoadMasterKey(file string) (*MasterKey, error) {
	var text string
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("shred: master key: %w", err)
		}
		text = string(b)
	} else {
		v, ok := os.LookupEnv(MasterKeyEnv)
		if !ok {
			return nil, fmt.Errorf("shred: no master key: give a file or set %s", MasterKeyEnv)
		}
		text = v
	}
	key, err := ParseMasterKey(text)
	if err != nil {
		return nil, err
	}
	return NewMasterKey(key)
}

// ParseMasterKey reads 32 bytes written in hex or standard base64.
func ParseMasterKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if b, err := hex.DecodeString(text); err == nil && len(b) == KeyLen {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(text); err == nil && len(b) == KeyLen {
		return b, nil
	}
	return nil, fmt.Errorf("shred: a master key is %d bytes in hex (64 digits) or base64", KeyLen)
}
