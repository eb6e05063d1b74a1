// Package topology is the kcqrs runtime: it wires Kafka to the domain.
//
// A Processor is one worker of a consumer group on the command topic. For
// every partition it owns it is the only writer of that partition's
// aggregates, and it runs each batch of commands as one Kafka transaction
// (franz-go's GroupTransactSession, KIP-447 stable offsets) holding the
// events, one snapshot per touched aggregate on the compacted changelog, the
// replies, any dead letters and the consumed offsets. A crash leaves all of
// them or none.
//
// The local Pebble store of a partition is written only after its
// transaction committed, in one atomic batch that also records the changelog
// offset it reflects, so it is never ahead of Kafka: a restarted worker reads
// only the changelog's tail, and no crash forces a wipe.
//
// Per command, in order: parse headers (the reply address first, so even a
// broken command is answered), check that murmur2(key) maps to the record's
// partition, decode (Avro single-object or JSON, validated by the schema),
// load the snapshot, dedupe by command id, check the deadline and the
// expected version, decide, evolve, emit. Input the processor cannot handle
// is answered INVALID, copied to the dead-letter topic and skipped; it never
// blocks its partition or crashes the worker.
//
// A command never chooses an output: its reply goes to the default reply
// topic or an allow-listed one (Config.ReplyTopics), never to a topic of the
// topology, Config.InternalTopics or "__*" (replyroute.go). Every output of a
// command (reply, events, snapshot, dead-letter copy) is built and sized
// before any is produced (output.go): one whose outputs would not fit in a
// record is answered and dead-lettered alone, without effect, so no single
// command can make a transaction fail on every retry.
//
// Scale-out: partitions are spread by the cooperative-sticky assignor; a
// revoked partition's open transaction is aborted (never committed for a
// partition no longer owned) and its store is kept on disk. A changelog
// tailer (standby.go) catches up the stores of newly assigned partitions
// before their first command, and with Config.Standbys keeps warm copies of
// other workers' partitions. Ready and PartitionStates (progress.go) report
// restore progress; watchHanging (hanging.go) reports command partitions
// blocked by a transaction someone left open.
//
// A Registry binds aggregate types (aggregates.Type) to their Avro schemas;
// the runtime is generic over them. records.go (commands) and
// records_stored.go (snapshots, events, replies) are the one place where Kafka
// records become domain values. Records written with older schema versions
// are resolved and upcast there (Register takes the upcasters and refuses a
// history it cannot read), so the domain only ever sees current values; a
// snapshot whose state cannot be read any more is rebuilt from the events
// topic (a StateSchemaError, then Registry.ReplayState) instead of stopping
// the worker.
//
// Before it joins the group a worker checks its ACLs (CheckPermissions names
// each missing one), creates missing topics, checks co-partitioning and
// refuses topic configs that would break a guarantee (CheckTopicConfigs).
// Describe prints the topology; an Observer (Config.Observer) is told what
// the worker does, for metrics.
//
// Where things live (the seams of Kafka Streams' StreamThread, TaskManager,
// StreamTask and StoreChangelogReader):
//
//	run.go      the run loop: poll, one transaction per batch, abort backoff;
//	            a session recreated when the producer cannot begin again
//	txn.go      the transaction: Begin, handle, snapshots, End, and what an
//	            unconfirmed End means (suspect partitions); queues the post-commit
//	            store write
//	applier.go  the post-commit store writes, off the command path: the queue,
//	            the overlay loads read, failed writes, draining
//	outbuf.go   output records and their header values, allocated in bulk
//	isolate.go  batches that abort twice for the same reason: one command per
//	            transaction, a deterministically refused command dead-lettered alone
//	restore.go  the restore phase: deferring (rewind, pause) partitions whose
//	            store is not ready, catching up from the changelog, resuming
//	memory.go   Config.MemoryBudget: block cache, memtables, soft memory limit
//	load.go     taking a partition's store, loading aggregates, the
//	            schema-change rebuild (deferred out of the transaction)
//	assign.go   assignment, revocation, reconciling with the group's assignment
//	standby.go  the tailer: eager catch-up of newly assigned partitions, standbys
//	handle.go   one command: parse, route, dedupe, decide, evolve, reply
//	unreadable.go  a partition holding data this build cannot read: held
//	            back alone (no abort), checked again with a backoff, named
//	            by Unreadable and Problem (/readyz)
//	schematopic.go the schema topic: publishing this build's schemas,
//	            learning a newer build's (rollbacks, rolling upgrades)
//	history.go  Config.History: the rebuild reads one aggregate's events
//	            through an index (package history), not a partition scan
//	schemaprep.go  schema-registry lookups made before Begin
//	personal.go personal data: sealing marked fields (records_stored.go calls it),
//	            data keys in the transaction of a subject's first event, the
//	            erasure command; personal_follow.go reads the keys topic for
//	            readers that are not processors (docs/erasure.md)
//
// Each owned partition is restoring, running, suspect or revoked
// (processor.go, partState); only a running partition's records enter a
// transaction. internal/logread decides the end of every read of a log from
// the fetch position, never from the last record handed over; past the last
// stable offset (a transaction someone left open), an owned partition's
// restore reads by the transaction markers (restore.go, readPastStable).
package topology
