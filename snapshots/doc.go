// Package snapshots is the local state store of a kcqrs worker: one Pebble
// database per owned partition, holding the latest snapshot of every aggregate
// of that partition as raw bytes by key, plus a checkpoint, the next offset of
// the partition's changelog that the store has not yet applied.
//
// The package knows neither Avro nor Kafka. The caller encodes snapshots,
// decides the keys (aggregate ids), and tells the store which changelog offset
// each write reflects.
//
// # The changelog is the truth, the store is a cache of it
//
// Every snapshot is first written to a compacted Kafka topic (the changelog)
// inside the transaction that commits the command offsets. Only after that
// transaction has committed does the worker write the same snapshots to the
// store, in one [Batch] that also carries the new checkpoint. So the store is
// never ahead of the changelog, and restoring a store means reading the
// changelog from [Store.Checkpoint] to its end and applying what was read.
//
// # Why the checkpoint lives in the same batch as the data
//
// [Store.Apply] writes the snapshots and the checkpoint in one atomic Pebble
// batch: after any crash the store holds either all of a batch (data and the
// offset it reflects) or none of it. If the checkpoint were kept elsewhere (a
// file, a second database, a Kafka consumer offset), a crash between the two
// writes would leave a store whose checkpoint claims data it does not hold
// (snapshots lost for good, since restore would start after them) or holds
// data its checkpoint does not account for (harmless only by luck). goka keeps
// its table offsets in the same store as the data for the same reason.
//
// # Why writes are not fsynced
//
// Writes go through Pebble's write-ahead log without a sync (pebble.NoSync).
// Pebble writes a batch to the WAL as one checksummed record and replays the
// WAL on open up to the first incomplete record, so after a crash, of the
// process or of the machine, the store holds a prefix of the batches that were
// applied: some of the most recent ones may be missing, but never part of one,
// and the checkpoint recovered with them names exactly the changelog offset
// that prefix reflects. Restore replays the rest from the changelog. An fsync
// per batch would buy nothing but latency, because nothing is lost that the
// changelog does not still hold. (Kafka Streams, by contrast, must wipe its
// state stores after an unclean shutdown under exactly-once, because its
// checkpoint file is written apart from the data.) TestCrashLeavesConsistentPrefix
// checks this on simulated machine crashes that keep random parts of the
// unsynced files.
//
// # Restoring fast
//
// A restore writes long stretches of the changelog. [Loader] collects them in
// runs, sorts each run by key (the last record of a key wins) and ingests it
// as one sorted table, without the write-ahead log, memtables and flushes
// that Apply goes through; the checkpoint follows each run. A crash between a
// run and its checkpoint leaves data past the checkpoint, never the other way
// round, and reading the changelog again from the checkpoint gives the same
// state (TestLoaderCrash).
//
// # When the store is ahead of the changelog
//
// If the changelog ends before the store's checkpoint (the topic was deleted
// and recreated, or a different cluster is used), the store holds data that
// is not in the changelog. The caller detects this by comparing the checkpoint
// with the changelog's end offset and calls [Store.Wipe] (or [Remove] and a new
// [Open]) before restoring from the beginning.
//
// # Many partitions per process
//
// A worker may own many partitions, hence many stores. Share one block cache
// among them with [NewCache] and [Options.Cache], and keep memtables small with
// [Options.MemTableSize].
//
// # Other implementations
//
// [KV] is the contract [Store] implements. Package snapshots/storetest holds a
// conformance suite that any implementation (for example an in-memory one for
// tests) can run.
package snapshots
