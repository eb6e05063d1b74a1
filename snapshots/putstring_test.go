package snapshots

import (
	"bytes"
	"testing"
)

// PutString builds the same batch as Put, including a nil value (a delete).
func TestPutStringIsPut(t *testing.T) {
	var a, b Batch
	for _, kv := range []struct {
		k string
		v []byte
	}{{"account/1", []byte("v1")}, {"", []byte{}}, {"k", nil}, {"account/1", []byte("v2")}} {
		a.Put([]byte(kv.k), kv.v)
		b.PutString(kv.k, kv.v)
	}
	if !bytes.Equal(a.buf, b.buf) || len(a.ops) != len(b.ops) {
		t.Fatalf("PutString built another batch: %q %v / %q %v", a.buf, a.ops, b.buf, b.ops)
	}
	for i := range a.ops {
		if a.ops[i] != b.ops[i] {
			t.Fatalf("op %d: %+v / %+v", i, a.ops[i], b.ops[i])
		}
	}
}
