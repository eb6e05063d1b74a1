// Package client sends commands to a kcqrs processor and waits for their
// replies, request/reply style over Kafka.
//
// A command goes to the command topic keyed by its aggregate id (so Kafka's
// murmur2 partitioner sends it to the partition that owns the aggregate) with
// the kcqrs headers and Spring Kafka's request/reply headers; the reply comes
// back on the reply topic with the same kafka_correlationId. Replies are read
// with read_committed: a reply is visible only once the transaction that
// wrote the command's events committed, so a reply you see is a fact.
//
// Commands are safe to retry with the same Command.ID: the processor
// remembers recent ids per aggregate and answers a retry with the original
// reply (Reply.Duplicate set) without doing anything twice.
package client
