package projection

import "fmt"

// maxEntryRecordBytes bounds a record the accounts group writes (a table
// entry, an owner-index entry). A record past the producer's limit
// (franz-go: 1,000,012 bytes, checked uncompressed; the broker's
// max.message.bytes, 1 MB by default) fails its produce, and a failed
// produce fails the group without committing: the event comes again, fails
// again, and the partition (with every account on it) stops for good. The
// processor accepts aggregate ids and owners that make such records (an id
// of 200 KB of '<' is 1.2 MB of JSON), so the accounts group checks before
// it writes.
const maxEntryRecordBytes = 900 << 10

// oversizedEntry says why the records of entry a (and its owner-index
// entry when owner is set) would be too large to write, or "" when they
// fit. The common case costs two additions: JSON escapes a byte into at
// most 6 bytes and path escaping into 3.
func oversizedEntry(a *Account, owner bool) string {
	if 7*(len(a.ID)+len(a.Owner)+len(a.Currency)+len(a.Status))+512 <= maxEntryRecordBytes {
		return ""
	}
	return oversizedEntrySlow(*a, owner)
}

// oversizedEntrySlow is oversizedEntry past its quick bound; it takes a
// copy, so that the caller's entry stays on its stack (the handler's next
// entry moved to the heap on every event when a itself was encoded).
func oversizedEntrySlow(a Account, owner bool) string {
	v, err := encodeAccount(&a)
	if err != nil {
		return err.Error()
	}
	if n := len(a.ID) + len(v); n > maxEntryRecordBytes {
		return fmt.Sprintf("its read-model entry would be a %d-byte record, more than %d (aggregate id of %d bytes, owner of %d)", n, maxEntryRecordBytes, len(a.ID), len(a.Owner))
	}
	if owner && a.Owner != "" {
		v, err := encodeAccount(&Account{ID: a.ID, Owner: a.Owner, Version: a.Version})
		if err != nil {
			return err.Error()
		}
		if n := len(OwnerKey(a.Owner, a.ID)) + len(v); n > maxEntryRecordBytes {
			return fmt.Sprintf("its owner-index entry would be a %d-byte record, more than %d (aggregate id of %d bytes, owner of %d)", n, maxEntryRecordBytes, len(a.ID), len(a.Owner))
		}
	}
	return ""
}

// deadLetterValue is what a dead letter of raw under key carries: raw, or
// nothing when the copy itself would be too large to write (the reason
// says so; the event stays in the events topic at the offset the headers
// name).
func deadLetterValue(key string, raw []byte, reason string) ([]byte, string) {
	if len(key)+len(raw) > maxEntryRecordBytes {
		return nil, reason + " (event value omitted from this dead letter: too large; read it at the topic, partition and offset named)"
	}
	return raw, reason
}
