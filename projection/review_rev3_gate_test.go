package projection

import (
	"context"
	"errors"
	"testing"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
)

// producerCtx is a gokaCtx whose Emit goes through a producer, as goka's
// does: the emit is done when the producer's promise is.
type producerCtx struct {
	*gokaCtx
	prod goka.Producer
}

func (c *producerCtx) Emit(topic goka.Stream, key string, value any, _ ...goka.ContextOption) {
	c.mu.Lock()
	c.emits++
	c.mu.Unlock()
	c.prod.EmitWithHeaders(string(topic), key, value.([]byte), nil).Then(c.emitDone)
}

// heldProducer is a producer whose promises are finished by the test.
type heldProducer struct {
	goka.Producer
	finish []goka.PromiseFinisher
}

func (p *heldProducer) EmitWithHeaders(string, string, []byte, goka.Headers) *goka.Promise {
	prom, fin := goka.NewPromiseWithFinisher()
	p.finish = append(p.finish, fin)
	return prom
}

// TestGateTellsEmitsOfOneKeyApart: a record forged onto the wrong
// partition of the owners group's input, under the key of a record another
// partition is handling at the same moment. The gate told an emit to the
// record whose handler runs under the emit's key, the right partition's
// first: the forged record's dead letter was counted against the other
// partition's record, its own entry was released as soon as its handler
// returned, and the next record of its partition (which emits nothing) was
// committed while that dead letter was still unacknowledged; refused, the
// group stops, but the commit covers the forged record, and its dead
// letter is lost.
func TestGateTellsEmitsOfOneKeyApart(t *testing.T) {
	p, err := New(Config{Brokers: []string{"127.0.0.1:1"}, StateDir: t.TempDir(), Registry: testRegistry(t), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	g := p.ownersGroup
	gate := newCommitGate(testPartitions)
	p.gates = map[goka.Group]*commitGate{g: gate}
	prod := &heldProducer{}
	gp := &gatedProducer{Producer: prod, g: gate}
	key := OwnerKey("alice", "o1")
	right := partitionOf(key)
	wrong := (right + 1) % testPartitions
	// The right partition's record is in its handler (begun, not ended).
	held := &gokaCtx{key: key, partition: right}
	eHeld := gate.begin(held)
	// The forged record, on the wrong partition: dead-lettered.
	forged := &producerCtx{gokaCtx: &gokaCtx{key: key, partition: wrong, offset: 7}, prod: gp}
	p.guard(g, p.onOwner)(forged, []byte("not an entry"))
	forged.finish()
	if len(prod.finish) != 1 {
		t.Fatalf("%d emits", len(prod.finish))
	}
	// The next record of the wrong partition emits nothing.
	next := &gokaCtx{key: "k2", partition: wrong, offset: 8}
	gate.end(gate.begin(next), nil)
	next.finish()
	if ok, _ := next.state(); ok {
		t.Error("a record was committed while the dead letter of the record before it was unacknowledged")
	}
	prod.finish[0](nil, errors.New("refused"))
	if ok, failed := next.state(); ok || !failed {
		t.Errorf("after the dead letter before it was refused: committed %v, failed %v", ok, failed)
	}
	gate.end(eHeld, nil)
}

// endingCtx is a producerCtx whose session is ending: goka's Fail returns
// instead of panicking, and its Context is done. SetValue emits the table
// entry through the producer.
type endingCtx struct{ *producerCtx }

func (c *endingCtx) Context() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func (c *endingCtx) SetValue(v any, _ ...goka.ContextOption) {
	raw, err := jsonCodec[Account]{}.Encode(v)
	if err != nil {
		panic(err)
	}
	c.Emit("table", c.key, raw)
}

// TestAFailedOwnersReadIsNeverCommitted: while a session ends, goka's
// Value answers a failed store read with nil (its Fail returns instead of
// panicking), as for a key without an entry. The owners group merged the
// record onto nothing, wrote it over the entry held (an older version
// replaced a newer one) and the gate released its commit: goka commits the
// offsets marked while a session ends.
func TestAFailedOwnersReadIsNeverCommitted(t *testing.T) {
	p, gate, st := gatedOwners(t)
	if err := st.Close(); err != nil { // every read fails
		t.Fatal(err)
	}
	prod := &heldProducer{}
	c := &endingCtx{&producerCtx{gokaCtx: &gokaCtx{key: OwnerKey("alice", "o1"), valueErr: ErrStorageClosed, stopping: true},
		prod: &gatedProducer{Producer: prod, g: gate}}}
	func() {
		defer func() { c.panicked = recover() }()
		p.guard(p.ownersGroup, p.onOwner)(c, []byte(`{"id":"o1","owner":"alice","version":1}`))
		c.finish()
	}()
	for _, f := range prod.finish {
		f(nil, nil)
	}
	if ok, _ := c.state(); ok {
		t.Fatalf("the record whose read failed was committed (%d emits)", len(prod.finish))
	}
}

// storeCtx is an endingCtx whose SetValue writes the store first, as
// goka's does: a failed write is reported with Fail (which returns while
// the session ends) and nothing is emitted.
type storeCtx struct {
	*endingCtx
	st *PebbleStorage
}

func (c *storeCtx) SetValue(v any, _ ...goka.ContextOption) {
	raw, err := jsonCodec[Account]{}.Encode(v)
	if err != nil {
		panic(err)
	}
	if err := c.st.Set(c.key, raw); err != nil {
		c.Fail(err)
		return
	}
	c.Emit("table", c.key, raw)
}

// TestAFailedOwnersWriteIsNeverCommitted: while a session ends, goka's
// SetValue reports a failed store write with a Fail that returns; nothing
// is emitted, and the gate released the record's commit without its
// entry.
func TestAFailedOwnersWriteIsNeverCommitted(t *testing.T) {
	p, gate, st := gatedOwners(t)
	prod := &heldProducer{}
	c := &storeCtx{&endingCtx{&producerCtx{gokaCtx: &gokaCtx{key: OwnerKey("alice", "o1"), stopping: true},
		prod: &gatedProducer{Producer: prod, g: gate}}}, st.(*PebbleStorage)}
	held := &Account{ID: "o1", Owner: "alice", Version: 1}
	c.value = held
	if err := st.Close(); err != nil { // the write fails
		t.Fatal(err)
	}
	func() {
		defer func() { c.panicked = recover() }()
		p.guard(p.ownersGroup, p.onOwner)(c, []byte(`{"id":"o1","owner":"alice","version":2}`))
		c.finish()
	}()
	for _, f := range prod.finish {
		f(nil, nil)
	}
	if ok, _ := c.state(); ok {
		t.Fatalf("the record whose write failed was committed (%d emits, sync error %v)", len(prod.finish), c.syncErr)
	}
}

// gatedOwners is a projector whose owners group has a gate of one
// partition, and that partition's store, open.
func gatedOwners(t *testing.T) (*Projector, *commitGate, storage.Storage) {
	t.Helper()
	p := unitProjector(t, codecEnv(t), nil)
	gate := newCommitGate(1)
	p.gates = map[goka.Group]*commitGate{p.ownersGroup: gate}
	st, err := pebbleBuilder(t.TempDir(), 0, p.ownerStores)(TableOf(p.ownersGroup), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Open(); err != nil {
		t.Fatal(err)
	}
	return p, gate, st
}
