package snapshots

// Batch collects puts, deletes and a checkpoint for one atomic Apply. It is
// plain memory, tied to no store: any KV implementation can apply it, and the
// zero value is an empty batch ready for use. A Batch is not safe for
// concurrent use.
//
// Operations on the same key take effect in the order they were added: the
// last one wins.
type Batch struct {
	// buf holds every key and value back to back; ops index into it, so a
	// batch of many small puts costs a few allocations, not two per put.
	buf   []byte
	ops   []batchOp
	next  int64
	hasCP bool
}

type batchOp struct {
	start, keyEnd, end int // key is buf[start:keyEnd], value buf[keyEnd:end]
	del                bool
}

// emptyValue is returned for puts of an empty value, so that it is not
// mistaken for a delete (nil).
var emptyValue = []byte{}

// Put sets key to value. Both are copied, so the caller may reuse them at
// once. A nil value deletes the key (like a Kafka tombstone); a non-nil empty
// value is stored as an empty value.
func (b *Batch) Put(key, value []byte) {
	if value == nil {
		b.Delete(key)
		return
	}
	start := len(b.buf)
	b.buf = append(b.buf, key...)
	keyEnd := len(b.buf)
	b.buf = append(b.buf, value...)
	b.ops = append(b.ops, batchOp{start: start, keyEnd: keyEnd, end: len(b.buf)})
}

// PutString is Put with a string key (no conversion to copy first).
func (b *Batch) PutString(key string, value []byte) {
	if value == nil {
		b.Delete([]byte(key))
		return
	}
	start := len(b.buf)
	b.buf = append(b.buf, key...)
	keyEnd := len(b.buf)
	b.buf = append(b.buf, value...)
	b.ops = append(b.ops, batchOp{start: start, keyEnd: keyEnd, end: len(b.buf)})
}

// Delete removes key. Deleting a missing key is not an error. The key is
// copied.
func (b *Batch) Delete(key []byte) {
	start := len(b.buf)
	b.buf = append(b.buf, key...)
	b.ops = append(b.ops, batchOp{start: start, keyEnd: len(b.buf), end: len(b.buf), del: true})
}

// SetCheckpoint sets the checkpoint the batch records: the next changelog
// offset not yet applied once this batch is. Every batch must carry one
// (Apply fails with ErrNoCheckpoint otherwise), it must not be negative, and
// it must not be below the store's current checkpoint. Calling it again
// replaces the value.
func (b *Batch) SetCheckpoint(next int64) {
	b.next, b.hasCP = next, true
}

// Checkpoint returns the checkpoint set by SetCheckpoint, and ok=false if none
// was set (for KV implementations).
func (b *Batch) Checkpoint() (next int64, ok bool) {
	return b.next, b.hasCP
}

// Len returns the number of puts and deletes in the batch (the checkpoint
// does not count).
func (b *Batch) Len() int { return len(b.ops) }

// Size returns the number of key and value bytes in the batch, to bound
// batches by size.
func (b *Batch) Size() int { return len(b.buf) }

// Reset empties the batch, checkpoint included, keeping its memory for reuse.
func (b *Batch) Reset() {
	b.buf = b.buf[:0]
	b.ops = b.ops[:0]
	b.next, b.hasCP = 0, false
}

// Each calls fn for every operation in the order added, with value nil for a
// delete (for KV implementations). key and value are valid only during the
// call and must not be modified. Each stops at the first error and returns
// it.
func (b *Batch) Each(fn func(key, value []byte) error) error {
	for _, op := range b.ops {
		key := b.buf[op.start:op.keyEnd:op.keyEnd]
		var value []byte
		if !op.del {
			value = b.buf[op.keyEnd:op.end:op.end]
			if value == nil {
				value = emptyValue
			}
		}
		if err := fn(key, value); err != nil {
			return err
		}
	}
	return nil
}
