// Package history answers "the events of one aggregate" and "its state at
// version N or time T" without scanning a partition of the events topic.
//
// Design: a derived index, not a second copy. The index (Index, in Pebble)
// maps (aggregate type, aggregate id, version, partition, offset) to the
// partition and record timestamp of each event, and keeps, in the same Pebble batch, the
// next offset it has not read of every partition (its checkpoint). An
// Indexer maintains it by reading the events topic read_committed from the
// checkpoints, using only the headers every kcqrs event carries
// (kcqrs_aggregate_type, kcqrs_version) and the key (the aggregate id). It
// issues raw fetches and parses the record batches itself (logread.EachCommitted:
// franz-go's read_committed semantics, aborted transactions, control
// batches, compression, checked against kgo.ProcessFetchPartition by a
// fuzz test), so that no kgo.Record is built per event: the index's upkeep
// is CPU taken from the processor.
//
// Why this design and not offsets recorded at produce time:
//   - Exactly once comes from Kafka alone. Offsets are known from the
//     produce promises before EndTxn, but whether the transaction commits
//     is known only after it; writing them anywhere else (a store, a
//     snapshot) is either not atomic with the commit or needs a second
//     transaction round. The index only ever sees committed records,
//     because it reads them back read_committed.
//   - Idempotent, so crash-safe without coordination: entries are keyed by
//     offset and written with their checkpoint atomically; a SIGKILL loses
//     at most the unwritten tail, which the next run reads again and
//     writes to the same keys.
//   - Nothing can drift: the index holds pointers, not events. Every read
//     fetches the committed records themselves and checks each envelope
//     against the (type, id, version) the index claims; a forged header is
//     left out, never believed.
//   - No effect on the processor's transaction: nothing is added between
//     Begin and End, and snapshots stay small (an offset list per
//     aggregate would grow without bound; see DESIGN.md, "table entries
//     must stay small").
//   - Not a consumer group: the checkpoint in Pebble is the only position,
//     so there is nothing to rebalance. A processor runs an Indexer over
//     every partition (cmd/processor --history), so any worker answers for
//     any aggregate, and a processor's rebalance changes nothing for it.
//   - Rebuilt from scratch by a command (kcqrs history reindex): Reset and
//     CatchUp. An index built from a recreated events topic (another topic
//     id) is reset by the Indexer itself.
//
// Reads (Reader.History) are exact even when the indexer lags: versions
// below the checkpoint are fetched at their indexed offsets (several
// fetches in flight, one record batch each), and the part of the partition
// past the checkpoint, up to the last stable offset, is scanned. So the
// answer is what a read_committed scan of the partition would give, in
// O(events of the aggregate + unindexed tail). StateAt folds events 1..N
// with the aggregate's own Evolve (topology.Registry.ReplayState, which
// refuses gaps and duplicates). The processor's schema-change rebuild uses
// a Reader (topology.Config.History) instead of a partition scan, and falls
// back to the scan when the history does not reach the snapshot's version.
//
// Files: index.go (Pebble layout, Apply, Lookup, Reset), indexer.go (the
// tailer), batch.go (the record batch parser), fetch.go (the indexer's
// fetch loop, the reader's single fetches), reader.go (History, scattered
// fetches), state.go (StateAt,
// the topology.HistorySource), http.go (the endpoints), service.go (all
// of it as the processor and the demo run it).
package history
