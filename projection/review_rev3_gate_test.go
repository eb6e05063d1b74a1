package projection

import (
	"errors"
	"testing"

	"github.com/lovoo/goka"
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
