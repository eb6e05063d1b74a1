package projection

import (
	"fmt"
	"math"

	"github.com/lovoo/goka"

	"github.com/kcqrs/kcqrs/wire"
)

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

// oversizedEntry says why the records of entry a (its currency counters,
// and its owner-index entry when owner is set) would be too large to write, or "" when they
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
	if a.Currency != "" {
		// The currency's counters: the currency is their key and is in
		// their value (the record the totals group reads, and its table
		// entry).
		v, err := encodeTotal(&CurrencyTotal{Currency: a.Currency, Partition: 9999,
			Total: math.MinInt64, Accounts: math.MinInt64, Open: math.MinInt64, Seq: math.MinInt64})
		if err != nil {
			return err.Error()
		}
		if n := len(TotalKey(a.Currency, 9999)) + len(v); n > maxEntryRecordBytes {
			return fmt.Sprintf("its currency counters would be a %d-byte record, more than %d (currency of %d bytes)", n, maxEntryRecordBytes, len(a.Currency))
		}
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

// deadLetterParts is what a dead letter of raw under key, with the event's
// headers h (a copy: changed in place), carries: the reason capped, and raw
// and then the headers copied from the event left out when the record with
// them would be too large to write (the reason says so; the event stays in
// the events topic at the offset the headers name). A dead letter too large
// for the producer fails its produce and the group, and the event comes
// again at every start (TestHugeDeadLettersBlockNothing). The key returned
// is key, cut only when it alone nearly fills the limit
// (TestHugeKeyDeadLetterBlocksNothing).
func deadLetterParts(key string, raw []byte, reason string, h goka.Headers) (string, []byte, string, goka.Headers) {
	reason = wire.Truncate(reason, wire.MaxDLQErrorBytes)
	hb := 0
	for k, v := range h {
		hb += len(k) + len(v) + 16
	}
	// Room for the reason's notes and the other dead-letter headers.
	size := len(key) + len(reason) + 1024
	if size+hb+len(raw) > maxEntryRecordBytes {
		raw = nil
		reason += " (event value omitted from this dead letter: too large; read it at the topic, partition and offset named)"
	}
	if size+hb > maxEntryRecordBytes {
		clear(h)
		reason += " (event headers omitted from this dead letter: too large)"
	}
	if len(key)+len(reason)+1024 > maxEntryRecordBytes {
		// A key near the limit (only a forged event has one: an event's
		// value holds its aggregate id): a short reason, and the key cut.
		reason = wire.Truncate(reason, 1024)
		if len(key) > maxEntryRecordBytes-4096 {
			key = wire.Truncate(key, maxEntryRecordBytes-4096)
			reason += " (key cut: read the event at the topic, partition and offset named)"
		}
	}
	return key, raw, reason, h
}
