// Package embedded runs an in-process Kafka-protocol broker (franz-go's
// kfake) for tests and the no-setup demo. Everything else talks to it over
// the Kafka protocol only, so the same code runs against a real cluster.
package embedded
