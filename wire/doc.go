// Package wire is the wire contract of kcqrs: the header names, content
// types and reply statuses that every client and worker agree on, and the Go
// form of the envelope records (reply, event, snapshot) whose Avro schemas live
// in package schemas.
//
// It has no dependencies, so any client can import it without pulling in the
// processor's storage or Kafka code.
package wire
