package snapshots_test

import (
	"fmt"
	"log"
	"os"

	"github.com/kcqrs/kcqrs/snapshots"
)

// The life of a partition's store: open, restore from the changelog starting
// at the checkpoint, then apply each committed transaction's snapshots with
// the changelog offset after them.
func Example() {
	stateDir, err := os.MkdirTemp("", "kcqrs-state")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(stateDir)

	cache := snapshots.NewCache(32 << 20) // one per process
	defer cache.Unref()

	dir := snapshots.PartitionDir(stateDir, "accounts-changelog", 0)
	s, err := snapshots.Open(dir, snapshots.Options{Cache: cache})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	from, ok, err := s.Checkpoint()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("restore from", from, ok) // a new store: the changelog's start

	// After the transaction that produced changelog records at offsets 0
	// and 1 committed:
	b := s.NewBatch()
	b.Put([]byte("account-1"), []byte("snapshot v1"))
	b.Put([]byte("account-2"), []byte("snapshot v3"))
	b.SetCheckpoint(2)
	if err := s.Apply(b); err != nil {
		log.Fatal(err)
	}

	v, _, _ := s.Get([]byte("account-2"))
	next, _, _ := s.Checkpoint()
	fmt.Printf("%s, next offset %d\n", v, next)
	// Output:
	// restore from 0 false
	// snapshot v3, next offset 2
}
