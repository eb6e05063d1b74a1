package projection

import (
	"errors"
	"testing"
)

// finish ends c's callback as goka does when it returns.
func (c *gokaCtx) finish() {
	c.mu.Lock()
	c.done = true
	c.tryCommit(nil)
	c.mu.Unlock()
}

// TestGateCommitsInOrder: the owners and totals groups' gate releases a
// record's commit only once every emit made before it on the partition was
// acknowledged (a record that emits nothing waits too), and none after an
// emit failed (deterministic companion of
// TestOwnersCommitNeverOvertakesAWrite).
func TestGateCommitsInOrder(t *testing.T) {
	for _, fail := range []bool{false, true} {
		g := newCommitGate(2)
		c1 := &gokaCtx{key: "k1", partition: 1}
		e1 := g.begin(c1)
		emit := g.emitting("k1") // its table entry
		if emit != e1 {
			t.Fatal("the emit was not told to its record")
		}
		g.end(e1, nil)
		c1.finish()
		c2 := &gokaCtx{key: "k2", partition: 1, offset: 1} // emits nothing
		g.end(g.begin(c2), nil)
		c2.finish()
		c3 := &gokaCtx{key: "k3", partition: 0} // another partition
		g.end(g.begin(c3), nil)
		c3.finish()
		if ok, _ := c3.state(); !ok {
			t.Fatal("a record of another partition waited")
		}
		if ok, _ := c2.state(); ok {
			t.Fatal("a record was committed while the emit of the one before it was pending")
		}
		var err error
		if fail {
			err = errors.New("refused")
		}
		g.emitted(emit, err)
		ok1, failed1 := c1.state()
		ok2, failed2 := c2.state()
		if !fail && (!ok1 || !ok2) {
			t.Fatalf("acknowledged, not committed: %v %v", ok1, ok2)
		}
		if fail {
			if ok1 || ok2 || !failed1 || !failed2 {
				t.Fatalf("after a failed emit: committed %v %v, failed %v %v", ok1, ok2, failed1, failed2)
			}
			c4 := &gokaCtx{key: "k4", partition: 0}
			g.end(g.begin(c4), nil)
			c4.finish()
			if ok, _ := c4.state(); ok {
				t.Fatal("a record after a failed emit was committed")
			}
		}
	}
}
