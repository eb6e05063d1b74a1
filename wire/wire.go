package wire

import (
	"strconv"
	"unicode/utf8"
)

// Header names. The kafka_* names are Spring Kafka's request/reply headers, so
// Spring's ReplyingKafkaTemplate (and any client following it) can send
// commands and match replies.
const (
	// HeaderCommandID is the client-chosen id of a command (UTF-8). Retries of
	// the same command must reuse it; the processor dedupes on it.
	HeaderCommandID = "kcqrs_command_id"
	// HeaderCommandType names the command (its Avro record name).
	HeaderCommandType = "kcqrs_command_type"
	// HeaderAggregateType names the aggregate type the command is for.
	HeaderAggregateType = "kcqrs_aggregate_type"
	// HeaderExpectedVersion is the optimistic-concurrency expectation: a
	// decimal version, or one of ExpectAny, ExpectNoStream, ExpectExists.
	HeaderExpectedVersion = "kcqrs_expected_version"
	// HeaderDeadline is an RFC 3339 time after which the command must not
	// take effect.
	HeaderDeadline = "kcqrs_deadline"
	// HeaderContentType is ContentTypeAvro (the default) or ContentTypeJSON.
	HeaderContentType = "content-type"
	// HeaderCorrelationID is echoed verbatim (raw bytes) on the reply.
	HeaderCorrelationID = "kafka_correlationId"
	// HeaderReplyTopic is the topic the reply goes to (default command_reply).
	HeaderReplyTopic = "kafka_replyTopic"
	// HeaderReplyPartition is an optional 4-byte big-endian partition for the reply.
	HeaderReplyPartition = "kafka_replyPartition"
	// HeaderSignature proves that a restricted command (a transfer leg)
	// comes from the trusted sender (the saga): lowercase hex HMAC-SHA256,
	// keyed with the deployment's signing key, of the length-prefixed command
	// id, aggregate type, key, command type and value (topology.SignCommand).
	HeaderSignature = "kcqrs_signature"

	// Headers on events and replies.
	HeaderEventType = "kcqrs_event_type"
	HeaderVersion   = "kcqrs_version"

	// Headers on dead letters, beside all of the original headers.
	HeaderDLQError     = "kcqrs_dlq_error"
	HeaderDLQTopic     = "kcqrs_dlq_topic"
	HeaderDLQPartition = "kcqrs_dlq_partition"
	HeaderDLQOffset    = "kcqrs_dlq_offset"
	// HeaderDLQValueOmitted is set on a dead letter whose original value
	// (and perhaps headers) did not fit in a record: the value is then
	// absent, this header holds the original value's size in bytes, and
	// HeaderDLQTopic/Partition/Offset point at the original command.
	HeaderDLQValueOmitted = "kcqrs_dlq_value_omitted"
)

// Content types of command and reply values.
const (
	// ContentTypeAvro is Avro single-object encoding (the default).
	ContentTypeAvro = "application/vnd.kcqrs.avro"
	// ContentTypeJSON is the Avro JSON encoding of the same record; for the
	// schemas without unions it is plain JSON.
	ContentTypeJSON = "application/json"
)

// Expected-version keywords, as in EventStoreDB.
const (
	ExpectAny      = "any"
	ExpectNoStream = "no_stream"
	ExpectExists   = "exists"
)

// Status is the outcome of a command, as carried by its reply.
type Status string

// Reply statuses. They are the symbols of the Avro enum kcqrs.ReplyStatus.
const (
	StatusAccepted       Status = "ACCEPTED"
	StatusRejected       Status = "REJECTED"
	StatusConflict       Status = "CONFLICT"
	StatusExpired        Status = "EXPIRED"
	StatusInvalid        Status = "INVALID"
	StatusWrongPartition Status = "WRONG_PARTITION"
	StatusInternalError  Status = "INTERNAL_ERROR"
)

// Reply answers one command. It is the Go form of kcqrs.Reply; its JSON
// form (encoding/json) is the reply's Avro JSON encoding, the wire names.
type Reply struct {
	CommandID     string `avro:"commandId" json:"commandId"`
	AggregateType string `avro:"aggregateType" json:"aggregateType"`
	AggregateID   string `avro:"aggregateId" json:"aggregateId"`
	Status        Status `avro:"status" json:"status"`
	// Version is the aggregate's version after the command (accepted), or its
	// current version (every other status where it is known).
	Version int64 `avro:"version" json:"version"`
	// Events is the number of events the command appended.
	Events int32 `avro:"events" json:"events"`
	// Code is a stable machine-readable reason (the domain's rejection code,
	// or one of the runtime's codes); empty when accepted.
	Code    string `avro:"code" json:"code"`
	Message string `avro:"message" json:"message"`
	// Duplicate is true when this reply is a re-send of the reply to an
	// earlier command with the same id; nothing new happened.
	Duplicate bool `avro:"duplicate" json:"duplicate"`
}

// Event is the envelope of one event on the events topic (kcqrs.Event).
type Event struct {
	AggregateType string `avro:"aggregateType"`
	AggregateID   string `avro:"aggregateId"`
	// Version is the aggregate's version after this event: 1 for its first.
	Version   int64  `avro:"version"`
	EventType string `avro:"eventType"`
	CommandID string `avro:"commandId"`
	// TimestampMillis is when the processor accepted the command.
	TimestampMillis int64 `avro:"timestampMillis"`
	// Payload is the event record in Avro single-object encoding.
	Payload []byte `avro:"payload"`
}

// Snapshot is one aggregate's latest state on the changelog (kcqrs.Snapshot).
type Snapshot struct {
	AggregateType string `avro:"aggregateType"`
	AggregateID   string `avro:"aggregateId"`
	Version       int64  `avro:"version"`
	// State is the state record in Avro single-object encoding.
	State []byte `avro:"state"`
	// Recent holds the latest commands' ids and replies, oldest first,
	// bounded by the processor's dedupe window.
	Recent []RecentCommand `avro:"recent"`
}

// RecentCommand remembers one handled command for deduplication.
type RecentCommand struct {
	CommandID string      `avro:"commandId"`
	Reply     RecentReply `avro:"reply"`
}

// RecentReply is what a remembered command's reply said, without what its
// snapshot already holds (kcqrs.RecentReply): the aggregate type and id are
// the snapshot's, the command id is the RecentCommand's, and a re-sent
// reply is always a duplicate. It keeps the dedupe window small, as every
// snapshot carries the whole window.
type RecentReply struct {
	Status  Status `avro:"status"`
	Version int64  `avro:"version"`
	Events  int32  `avro:"events"`
	Code    string `avro:"code"`
	Message string `avro:"message"`
}

// Remember returns what a snapshot keeps of r.
func Remember(r Reply) RecentCommand {
	return RecentCommand{CommandID: r.CommandID, Reply: RecentReply{
		Status: r.Status, Version: r.Version, Events: r.Events, Code: r.Code, Message: r.Message,
	}}
}

// Resend returns the reply a retry of the remembered command gets: the
// original one, marked as a duplicate, for the aggregate the snapshot holds.
func (rc RecentCommand) Resend(aggregateType, aggregateID string) Reply {
	return Reply{
		CommandID:     rc.CommandID,
		AggregateType: aggregateType,
		AggregateID:   aggregateID,
		Status:        rc.Reply.Status,
		Version:       rc.Reply.Version,
		Events:        rc.Reply.Events,
		Code:          rc.Reply.Code,
		Message:       rc.Reply.Message,
		Duplicate:     true,
	}
}

// MaxDLQErrorBytes caps a dead letter's kcqrs_dlq_error, the processor's and
// the projector's: larger than a reply's message, so that a handler panic
// keeps its stack, yet bounded, since a reason may quote its input (an
// aggregate id, a key), and Go's %q makes a byte up to 4 bytes long.
const MaxDLQErrorBytes = 8 << 10

// Truncate cuts s to at most n bytes (n > 64), at a rune boundary, ending
// with a marker that says how long it was: how capped texts (reply
// messages, dead-letter errors) read.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	marker := "... [truncated, " + strconv.Itoa(len(s)) + " bytes]"
	cut := n - len(marker)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + marker
}
