// Package saga runs the transfer process manager: it moves money between two
// accounts, which may live on different partitions and therefore under
// different writers, without a distributed lock.
//
// # The state machine
//
// A transfer is named forever by its source account and its Seq there (the
// source numbers its outgoing transfers 1, 2, 3, ...; the client's transfer
// id only labels it, and may be reused once the transfer ended). Its state
// is kept by the two accounts, as events, by the processor's exactly-once
// machinery:
//
//	DebitForTransfer (client) on the source
//	  -> TransferDebited      (source: pending, money out)      state debited
//	CreditForTransfer (saga) on the target
//	  -> TransferCredited     (target: money in, debit decided)  state credited
//	  |  TransferCreditRefused (target: closed, never opened,    state refused
//	  |                         overflow; debit decided)
//	CompleteTransfer (saga) | RefundTransfer (saga) on the source
//	  -> TransferCompleted    (source: not pending)             state completed
//	  |  TransferRefunded     (source: money back)              state refunded
//
// Every arrow is a command handled by one account's single writer, and
// every step is idempotent on the aggregate itself, not only within the
// processor's dedupe window:
//   - the target decides each debit once: credited or refused, both events
//     that move its per-source credit mark (account.Account.Credited), so a
//     credit of a debit at or below the mark is refused as already_credited
//     with no effect, however old it is; a refusal on an account that was
//     never opened is an event on it too, kept when it opens later;
//   - the source ends a pending transfer once, named by Seq: a completion or
//     refund of a transfer that is not pending, or whose Seq names another
//     transfer (a reused id), is refused with no effect;
//   - the saga's command ids are deterministic (source, debit version,
//     leg), so a leg sent twice is deduplicated.
//
// # Why events, never replies
//
// The saga consumes only the events topic. Events are written by the
// processor alone, exactly once, for commands it accepted; replies are not:
// any client can name the saga's reply topic and a correlation id that looks
// like a leg of someone's transfer, and a stateless saga that trusted its
// reply topic refunded a transfer whose credit was paid (money created). A
// refusal that was only a rejection reply also left no trace on the target,
// so a replay paid an account opened after it. Driven by events, a forged or
// duplicated reply changes nothing (the saga never reads one), and a replay
// from any earlier offset re-sends only commands the aggregates refuse: no
// second movement of money. The saga's commands name no reply topic: the
// processor answers them on its default reply topic, where people and
// audits can read the answers by command id (transfer:...). The reply topic
// earlier versions named (RetiredReplyTopic, transfer-replies) is internal:
// a command naming it is refused, so no forged "reply" is written there.
//
// # Liveness
//
//   - Re-drive: each worker tracks the transfers debited on its partitions
//     (the source's debit and its completion or refund are on the same
//     partition; the ones debited before its committed offset are read back
//     when it gets the partition) and sends the leg it waits for again,
//     with the same command id, when one has been pending RedriveAfter
//     (default 1m): the credit while the worker saw no decision of the
//     target, the completion once it saw TransferCredited, the refund once
//     it saw TransferCreditRefused. A leg lost before the processor read it
//     (retention, deleted records, dead-lettered) is then handled; one that
//     arrived is deduplicated, or refused with no effect (a credit as
//     decided already, a completion or refund of a transfer no longer
//     pending as unknown_transfer): no second movement of money.
//     Stats.Pending and OldestPending (and the Prometheus gauges of
//     Collector) show what waits; `kcqrs transfers` lists the pending
//     transfers from the events topic with their state.
//   - A transfer event the saga cannot decode (a newer schema during a
//     rolling upgrade, say) is never skipped: the transaction aborts, the
//     partition is paused and retried with a backoff (500 ms doubling to
//     30 s), with an error log, Stats.DecodeErrors and Stats.Stalled; other
//     partitions go on. Events of other aggregates, and account events no
//     transfer needs, are ignored.
//   - Lost offsets: franz-go would silently restart a group without
//     committed offsets from the start. The saga starts its partitions only
//     from committed offsets; a group's first start is recorded in a
//     compacted state topic (default kcqrs-transfers-state) after committing
//     the start of every partition. A group that started before and lacks an
//     offset stops with ErrOffsetsLost, and an operator resumes it (Resume,
//     `kcqrs transfers resume --at start|end|<time>`; start is safe and only
//     costs time).
//
// The saga is itself exactly once: it consumes the events topic in a
// consumer group and produces its commands in a Kafka transaction that also
// commits the consumed offsets (franz-go's GroupTransactSession). An
// aborted or crashed batch is consumed again and its commands produced
// again; the aborted copies are never read by the processor
// (read_committed).
//
// # Proof of origin
//
// A target cannot check the debit a CreditForTransfer names (another
// aggregate, maybe another writer), so a client writing a leg to the command
// topic itself could create money. The legs are therefore restricted
// commands (InternalCommands, set as topology.Config.InternalCommands of
// the processors): the saga signs each (kcqrs_signature, Config.SigningKey,
// topology.SignCommand) and the processor refuses any leg without a valid
// signature, before its dedupe window is read, as INVALID unsigned_command.
//
// # Limits
//
//   - The credit mark relies on the saga sending one source's credits to one
//     target in the order of their debits (it does: one events partition,
//     in order, in transactions). A credit dead-lettered or lost while a
//     later credit of the same source to the same target was decided is
//     then refused as already_credited when re-driven: that transfer stays
//     pending (listed, and in the pending gauges) for an operator.
//   - A worker learns the target's decision from the events partitions it
//     owns. With several workers, a target on a partition of another worker
//     than its source's leaves the source's worker without the decision: if
//     the completion or refund is then lost, the re-driven credit is refused
//     as decided, and the transfer stays pending and listed, with its state
//     (credited or refused) telling the operator which leg is missing. One
//     worker (or source and target on partitions of the same worker) always
//     re-drives the missing leg.
//   - A worker that gets a partition reads it back from its start to the
//     committed offset to find the transfers still pending there (so a
//     restarted or new worker re-drives them too): one read of the
//     partition's history per assignment, in the background.
package saga
