package history

// Hooks for the package's external tests.

// OpenFS opens an index on a given file system (vfs.NewStrictMem to
// simulate a crash).
var OpenFS = openFS

// FlushMemtable writes the index's memtable to disk now (what a full
// memtable does by itself).
func (x *Index) FlushMemtable() error { return x.db.Flush() }
