// Package shred is kcqrs's crypto-shredding: personal data (fields marked
// with the schema property schemas.PersonalProperty) is stored encrypted with
// a key per data subject, and erasing the subject destroys the key, so every
// copy of the data in the immutable logs becomes unreadable at once.
//
// # Keys
//
// A DataKey is 32 random bytes (AES-256) with a random 8-byte id. It is
// stored only wrapped: sealed by a KeyWrapper, the master key. MasterKey is
// the built-in wrapper (AES-256-GCM, the key read from a file or an
// environment variable by LoadMasterKey); a KMS can implement KeyWrapper
// instead. A wrapped key's record (EncodeKeyRecord) names the wrapper's ID,
// so a key written under another master key is a *WrongMasterKeyError when
// it is read, never a silently "erased" value. The records live in a
// compacted keys topic, keyed by subject; a subject's erasure replaces its
// key record with ErasedMarker (not a tombstone, which compaction would
// remove after delete.retention.ms, and with it the fact of the erasure).
//
// # The envelope of an encrypted field
//
// An encrypted field stays an Avro string, so schemas, fingerprints and every
// reader stay as they are. Its text is
//
//	"kcqrs:p1:" base64url-without-padding( key id (8) | nonce (12) | AES-256-GCM ciphertext and tag )
//
// with the additional data "kcqrs:p1:" + subject + 0x00 + key id, so a value
// copied to another subject does not decrypt. Seal writes it, Open reads it.
// Text without the prefix is returned as it is: data written before the
// field was marked. When the subject's key has been destroyed Open returns
// the documented Erased value ("[erased]") and ErrErased; a Keyring says
// Erased only for a subject it was told is erased (Delete), and ErrNoKey for
// one it knows nothing of.
//
// # Keyring
//
// A Keyring is the in-memory map from subject to data key that the runtime
// fills from the keys topic; Get returns a subject's Entry, which a caller
// acting on the subject several times in a row looks up once (SealEntry
// looks again once the keyring has replaced it). Fields applies Seal and
// Open to the marked fields of a Go struct, the step the runtime adds where
// records become domain values (topology/records.go, records_stored.go); an encoder with a
// compiled plan seals without a copy (schemas.Codec.EncodeSealed).
package shred
