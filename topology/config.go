package topology

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/kcqrs/kcqrs/shred"
)

// Topics names every topic of a topology. Zero fields get the defaults below.
type Topics struct {
	// Commands is the input topic, keyed by aggregate id. Default "commands".
	Commands string
	// Events is the event log (infinite retention). Default "events".
	Events string
	// Changelog is the compacted snapshot changelog. Default "snapshots-changelog".
	Changelog string
	// Replies is the default reply topic. Default "command_reply".
	Replies string
	// DeadLetters receives commands that could not be handled. Default "commands-dlq".
	DeadLetters string
	// Keys is the compacted topic of the data keys of personal data
	// (personal.go), co-partitioned with Commands. Default "kcqrs-keys" when
	// Config.Personal is set, else none.
	Keys string
}

func (t *Topics) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&t.Commands, "commands")
	def(&t.Events, "events")
	def(&t.Changelog, "snapshots-changelog")
	def(&t.Replies, "command_reply")
	def(&t.DeadLetters, "commands-dlq")
}

// Config configures a Processor. Call nothing on it: New applies the defaults
// and validates it, reporting every problem at once.
type Config struct {
	// Brokers are the seed brokers (host:port). Required.
	Brokers []string
	// Topics names the topics; see Topics for defaults.
	Topics Topics
	// Personal, when set, is the master key that wraps the data keys of
	// personal data: fields marked "kcqrs.personal" are then stored
	// encrypted per aggregate and can be erased (docs/erasure.md). Default
	// nil: marked fields are stored as they are.
	Personal shred.KeyWrapper
	// Group is the consumer group of the workers. Default "kcqrs-processor".
	Group string
	// InstanceID identifies this worker among the group's workers. It must be
	// stable across restarts of the same worker and unique among live ones:
	// the transactional id is Group + "-" + InstanceID, so a restarted worker
	// fences and aborts its own leftover transaction at once. Required.
	InstanceID string
	// StateDir holds one Pebble store per owned partition. Required.
	StateDir string
	// Partitions is the partition count used when creating missing topics.
	// Existing topics keep theirs (and must agree). Default 8.
	Partitions int32
	// ReplicationFactor for created topics. Default -1: the broker default.
	ReplicationFactor int16
	// CommitInterval bounds how long one transaction stays open while more
	// commands are waiting. Default 100ms (as Kafka Streams under EOS). A
	// transaction also ends as soon as no more commands are buffered.
	CommitInterval time.Duration
	// MaxBatch bounds the commands in one transaction. Default 1000.
	MaxBatch int
	// TransactionTimeout is the broker-side timeout of an open transaction;
	// it bounds how long a crashed worker's transaction blocks readers (of
	// the replies, events and changelog partitions it wrote to) when the
	// worker is not restarted. Default 8.5s: half a second above
	// SessionTimeout. A worker left dead costs the later of the two plus up
	// to one more second, because the new owner's stable offset fetch gets
	// UNSTABLE_OFFSET_COMMIT while the dead transaction is open and
	// franz-go retries it every second (consumer_group.go, deliberately
	// fixed): 8.5s + 1s stays within SessionTimeout + 2s, where 9s + 1s
	// did not (measured in `make bench`, docs/operations.md).
	TransactionTimeout time.Duration
	// SessionTimeout is the group session timeout: how long a worker that
	// died keeps its partitions. It must stay below TransactionTimeout:
	// franz-go holds every offset commit while a rebalance runs, a
	// rebalance waits for a dead member until its session expires, and a
	// commit held past the transaction timeout fails. Default 8s
	// (franz-go's own default is 45s).
	SessionTimeout time.Duration
	// RebalanceTimeout bounds how long a rebalance waits for every member
	// to rejoin (a member ending a transaction rejoins after it, within a
	// commit interval). Default 5s (franz-go's own: 60s): below the restart
	// interval of a crash-looping worker, so that a rebalance waiting for a
	// dead member ends before the next one starts (README "Liveness under
	// crashes").
	RebalanceTimeout time.Duration
	// HeartbeatInterval is how often a worker heartbeats to the group
	// coordinator; under the classic protocol a member learns that a
	// rebalance started (and must rejoin) only with its next heartbeat, so
	// it bounds how long the other members keep a rebalance waiting.
	// Default 1s (franz-go's and Kafka's own: 3s); it must stay below a
	// third of SessionTimeout, Kafka's rule of thumb.
	HeartbeatInterval time.Duration
	// StaticMembership joins the group with InstanceID as its static
	// member id (KIP-345): a worker restarted within SessionTimeout takes
	// its old assignment back without a rebalance, so a crash costs only
	// the restart. A stopped worker then leaves the group explicitly (a
	// LeaveGroup for its instance id). Off in this struct; the processor
	// binary turns it on by default (--static, opt out with --static=false).
	StaticMembership bool
	// DedupeWindow is how many recent command ids (with their replies) each
	// aggregate remembers. A retried command older than that is new again.
	// Default 32.
	DedupeWindow int
	// InternalCommands lists, per aggregate type, the command types only a
	// trusted sender may send (the transfer saga's legs): each must carry
	// a kcqrs_signature made with CommandSigningKey (SignCommand), checked
	// before anything else reads the aggregate; one without a valid
	// signature is answered INVALID unsigned_command and dead-lettered.
	InternalCommands map[string][]string
	// CommandSigningKey is the secret of the signatures of InternalCommands,
	// shared by every worker and saga of the deployment. Without it every
	// internal command is refused.
	CommandSigningKey []byte
	// MaxCommandBytes bounds a command record (key, value and headers, as
	// franz-go sizes a record); larger ones are answered INVALID too_large
	// and dead-lettered. Default 900 KiB: a command's dead-letter copy must
	// fit below MaxRecordBytes (Validate refuses a value that does not
	// leave 16 KiB for it).
	MaxCommandBytes int
	// MemoryBudget is the memory one worker process is sized for, in bytes.
	// Default DefaultMemoryBudget (256 MiB). The defaults of CacheBytes
	// (1/8 of it), MemTableBytes (1/8) and the soft memory limit of the Go
	// runtime (SoftMemoryLimit: the rest) come from it (memory.go,
	// docs/operations.md "Memory").
	MemoryBudget int64
	// CacheBytes is the Pebble block cache shared by all stores. Default
	// MemoryBudget/8 (32 MiB).
	CacheBytes int64
	// MemTableBytes bounds the memtables of all stores of the worker
	// together: a store opened while the worker holds n stores gets a
	// memtable of MemTableBytes/n, between 1 and 4 MiB (Pebble holds a
	// second one while the first is flushed). Default MemoryBudget/8
	// (32 MiB).
	MemTableBytes int64
	// FetchMaxBytes bounds the bytes one fetch response may carry, for
	// every client of the processor (commands, changelog restore, standby
	// tailing). Default 1 MiB, not franz-go's 50 MiB: while a worker consumes
	// a backlog, each buffered fetch is held compressed and then decoded
	// into records (with their headers, several times the bytes fetched):
	// at 4 MiB, the fetches of a worker populating 1M aggregates were most
	// of its live heap (BENCHMARKS.md, "Restore and memory by default"). A
	// batch of MaxBatch commands still fits in one fetch. At most 2 GiB.
	FetchMaxBytes int64
	// FetchMaxPartitionBytes bounds the bytes of one partition in a fetch
	// response. Default 256 KiB. A record larger than either bound is still
	// returned, alone. At most 2 GiB.
	FetchMaxPartitionBytes int64
	// StateCacheEntries bounds how many decoded aggregates (committed state
	// only) are kept between transactions, sparing a store read and a
	// snapshot decode for hot aggregates. Default 10000; negative disables.
	StateCacheEntries int
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
	// ClientOpts are extra franz-go options (TLS, SASL, ...) applied to every
	// client the processor creates.
	ClientOpts []kgo.Opt
	// SessionClientOpts are extra options of the transactional session's
	// client only (the one consuming commands and producing results), for
	// hooks that may be attached to one client, such as kprom's metrics.
	SessionClientOpts []kgo.Opt
	// Now returns the current time (for deadlines and event timestamps).
	// Default time.Now.
	Now func() time.Time
	// SchemaRegistryURLs, when set, are the URLs of a Confluent Schema
	// Registry: events and snapshots are then written in its wire format
	// (Registry.UseSchemaRegistry), and commands are accepted in it. Default
	// none: the Avro single-object encoding, which needs no registry. New
	// calls UseSchemaRegistry on the registry it is given, unless already done.
	SchemaRegistryURLs []string
	// SchemaRegistryOpts are extra options (auth, TLS) for the schema
	// registry client.
	SchemaRegistryOpts []sr.ClientOpt
	// Compression is the codec of everything the processor produces
	// (events, replies, snapshots, dead letters): none, gzip, snappy, lz4 or
	// zstd. Default none, which every Kafka client reads and which costs the
	// processor (CPU-bound, see BENCHMARKS.md) nothing; gzip is also read
	// by every mainstream client out of the box (kafkajs included), while
	// snappy, lz4 and zstd need an extra codec in some (kafkajs). A topic's
	// compression.type on the broker can still recompress its log.
	Compression string
	// Observer is told what the processor does (metrics). Default NopObserver.
	Observer Observer

	// Standbys is how many other workers keep a warm copy of each
	// partition's store by tailing its changelog, so that taking a
	// partition over after a crash reads only the last few records. Each
	// worker derives its standby partitions from the group's current
	// assignment (see README "Warm standbys"). Default 0: none; a worker
	// then keeps only the stores of partitions it owned before, on disk.
	Standbys int
	// StandbyInterval is how often the changelog tailer catches up the
	// stores of standby partitions and of assigned partitions not yet in
	// use, and re-reads the group's assignment. Default 1s.
	StandbyInterval time.Duration
	// HangingTxnThreshold is how long the last stable offset of a command
	// partition may stay at the same offset below its high watermark
	// before the processor reports a hanging transaction (someone's
	// transaction left open, blocking every read_committed reader).
	// Default 2m; negative disables the check.
	HangingTxnThreshold time.Duration
	// GroupProtocol is the consumer group protocol of the workers:
	// "classic" (JoinGroup/SyncGroup: a rebalance stops every member's
	// commits until each one rejoined) or "consumer" (KIP-848: the broker
	// assigns partitions through heartbeats, and members keep committing
	// while another one comes or goes; needs Kafka 4.0+, and falls back to
	// classic on a broker without it). Default "classic" (README
	// "Liveness under crashes" has the measurements).
	GroupProtocol string

	// ReplyTopics are the topics a command may name as its reply topic
	// (kafka_replyTopic), besides Topics.Replies which is always allowed:
	// exact names, or prefixes ending in "*" ("replies-*" for Spring's
	// per-instance reply topics). The topology's own topics, InternalTopics
	// and every topic starting with "__" are never allowed. Default none.
	ReplyTopics []string
	// InternalTopics are topics of other parts of the system (the saga's
	// reply topic, the projectors' tables), as exact names or prefixes
	// ending in "*", that no reply may ever go to, whatever ReplyTopics
	// says (Validate refuses an allow-list that overlaps them). Default none.
	InternalTopics []string
	// MaxRecordBytes is the largest record the processor produces (reply,
	// event, snapshot, dead letter), sized as franz-go sizes it
	// (uncompressed, with key and headers). A command whose outputs would
	// be larger is answered and dead-lettered alone, without effect. Default
	// 1,000,012 (franz-go's ProducerBatchMaxBytes; a lower one set in
	// ClientOpts or SessionClientOpts applies instead).
	MaxRecordBytes int
	// BrokerMaxMessageBytes is the broker's (or the output topics')
	// max.message.bytes; outputs are also checked against it. Default
	// 1,048,588 (Kafka's default).
	BrokerMaxMessageBytes int
	// ReplyTopicCacheSize bounds the reply topics whose partition counts
	// (or absence) a worker remembers. Default 1000.
	ReplyTopicCacheSize int
	// ReplyLookupTimeout bounds one lookup of a reply topic's metadata
	// inside a transaction; a lookup that fails transiently is retried in
	// the background with backoff and its batch is retried. Default 500ms.
	ReplyLookupTimeout time.Duration
	// SchemaTopic is the compacted topic where every worker publishes the
	// schemas it knows (current and released versions, by fingerprint) and
	// where an older worker learns the newer schemas of data it meets (a
	// rollback, or a rolling upgrade): data of a forward compatible change
	// is then read by resolution (schematopic.go). Default "kcqrs-schemas";
	// "-" disables publishing and learning.
	SchemaTopic string
	// History, when set, is where the schema-change rebuild of an
	// aggregate whose snapshot state is unreadable reads its events (only
	// that aggregate's; package history). Nil, or an answer that does not
	// reach the snapshot's version: the rebuild scans the partition.
	History HistorySource

	// hooks are test-only interception points (export_test.go).
	hooks *testHooks
}

// testHooks let tests freeze a worker at precise points.
type testHooks struct {
	// beforeEnd runs after a batch was produced and before its
	// transaction is ended, with the partitions of the batch.
	beforeEnd func(partitions []int32)
	// afterEnd runs once the batch's transaction ended and the stores
	// were (or were not) written, with the checkpoints of the batch's
	// partitions' stores.
	afterEnd func(committed bool, checkpoints map[int32]int64)
	// storeApply runs before a committed batch is written to a
	// partition's store; an error stands for a failed write.
	storeApply func(partition int32) error
	// handOver runs when the run loop hands a revoked partition's store
	// to the tailer.
	handOver func(partition int32)
	// drainWait runs when the run loop starts waiting for queued store
	// writes to land.
	drainWait func()
	// storeFS and storeMemTable open the stores on another file system
	// (Pebble's vfs/errorfs) with another memtable size.
	storeFS       vfs.FS
	storeMemTable uint64
	// produce replaces the session's Produce (the in-process benchmark
	// of the command path, commandpath_bench_test.go).
	produce func(r *kgo.Record, promise func(*kgo.Record, error))
}

// DefaultKeysTopic is the keys topic of personal data when Config.Personal
// is set and Topics.Keys is not.
const DefaultKeysTopic = "kcqrs-keys"

func (c *Config) setDefaults() {
	c.Topics.setDefaults()
	if c.Personal != nil && c.Topics.Keys == "" {
		c.Topics.Keys = DefaultKeysTopic
	}
	if c.Group == "" {
		c.Group = "kcqrs-processor"
	}
	if c.Partitions == 0 {
		c.Partitions = 8
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = 100 * time.Millisecond
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1000
	}
	if c.TransactionTimeout == 0 {
		c.TransactionTimeout = 8500 * time.Millisecond
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 8 * time.Second
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = 5 * time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = 32
	}
	if c.MaxCommandBytes == 0 {
		c.MaxCommandBytes = DefaultMaxCommandBytes
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if c.BrokerMaxMessageBytes == 0 {
		c.BrokerMaxMessageBytes = DefaultBrokerMaxMessageBytes
	}
	if c.SchemaTopic == "" {
		c.SchemaTopic = DefaultSchemaTopic
	}
	if c.ReplyTopicCacheSize == 0 {
		c.ReplyTopicCacheSize = 1000
	}
	if c.ReplyLookupTimeout == 0 {
		c.ReplyLookupTimeout = 500 * time.Millisecond
	}
	if c.MemoryBudget == 0 {
		c.MemoryBudget = DefaultMemoryBudget
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = c.MemoryBudget / 8
	}
	if c.MemTableBytes == 0 {
		c.MemTableBytes = c.MemoryBudget / 8
	}
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = 1 << 20
	}
	if c.FetchMaxPartitionBytes == 0 {
		c.FetchMaxPartitionBytes = 256 << 10
	}
	if c.StateCacheEntries == 0 {
		c.StateCacheEntries = 10000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Observer == nil {
		c.Observer = NopObserver{}
	}
	if c.StandbyInterval == 0 {
		c.StandbyInterval = time.Second
	}
	if c.HangingTxnThreshold == 0 {
		c.HangingTxnThreshold = 2 * time.Minute
	}
	if c.GroupProtocol == "" {
		c.GroupProtocol = GroupProtocolClassic
	}
	if c.Compression == "" {
		c.Compression = CompressionNone
	}
}

// Output compression codecs (Config.Compression).
const (
	CompressionNone   = "none"
	CompressionGzip   = "gzip"
	CompressionSnappy = "snappy"
	CompressionLZ4    = "lz4"
	CompressionZstd   = "zstd"
)

// compressionCodecs are the franz-go codecs of Config.Compression.
var compressionCodecs = map[string]kgo.CompressionCodec{
	CompressionNone:   kgo.NoCompression(),
	CompressionGzip:   kgo.GzipCompression(),
	CompressionSnappy: kgo.SnappyCompression(),
	CompressionLZ4:    kgo.Lz4Compression(),
	CompressionZstd:   kgo.ZstdCompression(),
}

// Validate reports every problem of the (defaulted) config at once.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers"))
	}
	if c.InstanceID == "" {
		errs = append(errs, errors.New("no instance id (it must be stable across restarts of a worker)"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("no state directory"))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("partitions %d < 1", c.Partitions))
	}
	if c.CommitInterval < 0 {
		errs = append(errs, fmt.Errorf("commit interval %v < 0", c.CommitInterval))
	}
	if c.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("max batch %d < 1", c.MaxBatch))
	}
	if c.DedupeWindow < 1 {
		errs = append(errs, fmt.Errorf("dedupe window %d < 1", c.DedupeWindow))
	}
	if c.MaxCommandBytes < 1 {
		errs = append(errs, fmt.Errorf("max command bytes %d < 1", c.MaxCommandBytes))
	}
	errs = append(errs, c.validateOutputs()...)
	if c.CacheBytes < 0 {
		errs = append(errs, fmt.Errorf("cache bytes %d < 0", c.CacheBytes))
	}
	if c.MemoryBudget < 0 || c.MemTableBytes < 0 {
		errs = append(errs, fmt.Errorf("memory budget %d and memtable bytes %d must not be negative", c.MemoryBudget, c.MemTableBytes))
	}
	if _, ok := compressionCodecs[c.Compression]; !ok {
		errs = append(errs, fmt.Errorf("compression %q: want none, gzip, snappy, lz4 or zstd", c.Compression))
	}
	if c.FetchMaxBytes < 1 || c.FetchMaxBytes > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("fetch max bytes %d not in [1, %d]", c.FetchMaxBytes, math.MaxInt32))
	}
	if c.FetchMaxPartitionBytes < 1 || c.FetchMaxPartitionBytes > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("fetch max partition bytes %d not in [1, %d]", c.FetchMaxPartitionBytes, math.MaxInt32))
	}
	if c.TransactionTimeout < time.Second {
		errs = append(errs, fmt.Errorf("transaction timeout %v < 1s", c.TransactionTimeout))
	}
	if c.SessionTimeout >= c.TransactionTimeout {
		errs = append(errs, fmt.Errorf("session timeout %v must be below the transaction timeout %v (a commit waits for a rebalance, which waits for a dead member's session)", c.SessionTimeout, c.TransactionTimeout))
	}
	if c.HeartbeatInterval <= 0 || 3*c.HeartbeatInterval > c.SessionTimeout {
		errs = append(errs, fmt.Errorf("heartbeat interval %v must be positive and at most a third of the session timeout %v", c.HeartbeatInterval, c.SessionTimeout))
	}
	if c.Standbys < 0 {
		errs = append(errs, fmt.Errorf("standbys %d < 0", c.Standbys))
	}
	if c.StandbyInterval < 0 {
		errs = append(errs, fmt.Errorf("standby interval %v < 0", c.StandbyInterval))
	}
	if c.GroupProtocol != GroupProtocolClassic && c.GroupProtocol != GroupProtocolConsumer {
		errs = append(errs, fmt.Errorf("group protocol %q: want %q or %q", c.GroupProtocol, GroupProtocolClassic, GroupProtocolConsumer))
	}
	names := map[string]string{}
	for _, t := range []struct{ role, name string }{
		{"commands", c.Topics.Commands}, {"events", c.Topics.Events},
		{"changelog", c.Topics.Changelog}, {"replies", c.Topics.Replies},
		{"dead letters", c.Topics.DeadLetters},
	} {
		if other, dup := names[t.name]; dup {
			errs = append(errs, fmt.Errorf("topic %q is both the %s and the %s topic", t.name, other, t.role))
		}
		names[t.name] = t.role
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("topology: invalid config: %w", errors.Join(errs...))
}

// validateOutputs checks the output limits against each other and the
// reply topics (replyroute.go).
func (c *Config) validateOutputs() []error {
	var errs []error
	if c.MaxRecordBytes < 512 || c.MaxRecordBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("max record bytes %d not in [512, %d] (franz-go's bounds of ProducerBatchMaxBytes)", c.MaxRecordBytes, 1<<30))
	}
	if c.BrokerMaxMessageBytes < 512 {
		errs = append(errs, fmt.Errorf("broker max message bytes %d < 512", c.BrokerMaxMessageBytes))
	}
	if limit := min(c.MaxRecordBytes, c.BrokerMaxMessageBytes); c.MaxCommandBytes > 0 && c.MaxCommandBytes > limit-commandHeadroom {
		errs = append(errs, fmt.Errorf("max command bytes %d does not leave %d bytes below the record limit %d (the lower of max record bytes %d and broker max message bytes %d) for a command's dead-letter copy: lower it to %d or raise the limits (and the producer's ProducerBatchMaxBytes with them)",
			c.MaxCommandBytes, commandHeadroom, limit, c.MaxRecordBytes, c.BrokerMaxMessageBytes, limit-commandHeadroom))
	}
	if c.ReplyTopicCacheSize < 0 {
		errs = append(errs, fmt.Errorf("reply topic cache size %d < 0", c.ReplyTopicCacheSize))
	}
	if c.ReplyLookupTimeout < 0 {
		errs = append(errs, fmt.Errorf("reply lookup timeout %v < 0", c.ReplyLookupTimeout))
	}
	return append(errs, c.validateReplyTopics()...)
}

// The consumer group protocols of Config.GroupProtocol.
const (
	GroupProtocolClassic  = "classic"
	GroupProtocolConsumer = "consumer"
)
