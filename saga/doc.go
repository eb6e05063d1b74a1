// Package saga runs the transfer process manager: it moves money between two
// accounts, which may live on different partitions and therefore under
// different writers, without a distributed lock.
//
// A transfer is a chain of ordinary commands, each handled by the one writer
// of its account:
//
//  1. A client sends DebitForTransfer to the source account. If accepted, the
//     money leaves the source and the transfer is pending there
//     (event TransferDebited); if rejected, nothing happened.
//  2. The saga sees TransferDebited on the events topic and sends
//     CreditForTransfer to the target account.
//  3. The saga sees the credit's reply on its own reply topic. ACCEPTED: it
//     sends CompleteTransfer to the source. Anything else (the target is
//     closed or was never opened, the credit would overflow, ...) is a
//     command that had no effect: it sends RefundTransfer to the source,
//     which puts the money back (compensation).
//
// The saga is itself exactly once: it consumes the events topic and its reply
// topic in a consumer group and produces its commands in a Kafka transaction
// that also commits the consumed offsets (franz-go's GroupTransactSession).
// An aborted or crashed batch is consumed again and its commands produced
// again; the aborted copies are never read by the processor (read_committed).
// Every command it sends has a deterministic id derived from the debit event
// (source account and its version), so even a command produced twice is
// deduplicated by the processor. It keeps no state of its own: everything a
// step needs travels on the records (the credit carries the transfer's
// source, version and amount in its correlation id, which the processor
// echoes on the reply).
//
// The invariant: money is neither created nor destroyed. A debit is ended by
// exactly one of complete or refund (the source's pending transfer can end
// only once), a credit happens at most once (deterministic command id), and a
// refund happens only after a credit that had no effect.
package saga
