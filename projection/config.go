package projection

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/topology"
)

// Names are the consumer groups, tables and topics of one version of the
// read models. A new version (a rebuild beside the live one) gets all-new
// names, so both run side by side without sharing anything.
type Names struct {
	// Prefix of every name. Default "kcqrs-proj".
	Prefix string
	// Version of the read models. Default 1.
	Version int
}

func (n Names) withDefaults() Names {
	if n.Prefix == "" {
		n.Prefix = "kcqrs-proj"
	}
	if n.Version == 0 {
		n.Version = 1
	}
	return n
}

func (n Names) base(model string) string {
	n = n.withDefaults()
	return fmt.Sprintf("%s-%s-v%d", n.Prefix, model, n.Version)
}

// AccountsGroup folds the events topic into the account table.
func (n Names) AccountsGroup() goka.Group { return goka.Group(n.base("accounts")) }

// OwnersGroup re-keys account entries by owner.
func (n Names) OwnersGroup() goka.Group { return goka.Group(n.base("owners")) }

// TotalsGroup keeps the running total per currency.
func (n Names) TotalsGroup() goka.Group { return goka.Group(n.base("totals")) }

// ByOwnerTopic carries account entries keyed by owner (accounts -> owners).
func (n Names) ByOwnerTopic() goka.Stream { return goka.Stream(n.base("accounts") + "-by-owner") }

// ByCurrencyTopic carries account entries keyed by currency (accounts -> totals).
func (n Names) ByCurrencyTopic() goka.Stream {
	return goka.Stream(n.base("accounts") + "-by-currency")
}

// DeadLetters is the dead-letter topic of a group.
func DeadLetters(g goka.Group) goka.Stream { return goka.Stream(string(g) + "-dlq") }

// Groups lists the groups of the version, upstream first.
func (n Names) Groups() []goka.Group {
	return []goka.Group{n.AccountsGroup(), n.OwnersGroup(), n.TotalsGroup()}
}

// Tables lists the table topics of the version.
func (n Names) Tables() []string {
	var out []string
	for _, g := range n.Groups() {
		out = append(out, string(goka.GroupTable(g)))
	}
	return out
}

// Intermediate lists the topics between the groups of the version.
func (n Names) Intermediate() []string {
	return []string{string(n.ByOwnerTopic()), string(n.ByCurrencyTopic())}
}

// Config configures a Projector. New applies the defaults and validates it.
type Config struct {
	// Brokers are the seed brokers. Required.
	Brokers []string
	// EventsTopic is the processor's event log. Default "events".
	EventsTopic string
	// Names of this version's groups and topics; see Names for defaults.
	Names Names
	// StateDir holds the Pebble stores of the group tables (in
	// StateDir/processor) and of the query views (StateDir/views). Required.
	StateDir string
	// Registry decodes events. Required.
	Registry *topology.Registry
	// ReplicationFactor of the topics the projector creates. Default 1 (goka's
	// own default of 2 fails on a one-broker cluster).
	ReplicationFactor int
	// CommitInterval is how often consumed offsets are committed. Default 200ms.
	CommitInterval time.Duration
	// SessionTimeout is the consumer-group session timeout: how long the
	// broker waits for a crashed member before giving its partitions to
	// another (or to its own restart). Default 10s (sarama's). Brokers
	// refuse values below their group.min.session.timeout.ms (6s by default).
	SessionTimeout time.Duration
	// CacheBytes is the Pebble block cache shared by the stores of one
	// processor or view. Default 8 MiB.
	CacheBytes int64
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
	// ClientOpts are added to every franz-go client the package makes
	// (topic creation, catch-up checks): TLS and SASL, for instance
	// (config.Kafka.Opts). The seed brokers come from Brokers.
	ClientOpts []kgo.Opt
	// Sarama, when set, adjusts every sarama config goka's consumers,
	// producers and topic managers use (TLS and SASL: Net.TLS, Net.SASL).
	Sarama func(*sarama.Config)
	// Personal, when set, makes the owners index blind: keyed by an HMAC of
	// the opened owner, so that owners sealed as personal data can be
	// looked up (personal.go, docs/erasure.md). The query server uses it
	// for lookups. Default nil: the index is keyed by the owner as stored.
	Personal *Personal
}

// kgoOpts are the options of the package's franz-go clients.
func (c *Config) kgoOpts(extra ...kgo.Opt) []kgo.Opt {
	opts := append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, c.ClientOpts...)
	return append(opts, extra...)
}

func (c *Config) setDefaults() {
	if c.EventsTopic == "" {
		c.EventsTopic = "events"
	}
	c.Names = c.Names.withDefaults()
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = 1
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = 200 * time.Millisecond
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("Brokers is required"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("StateDir is required"))
	}
	if c.Registry == nil {
		errs = append(errs, errors.New("Registry is required"))
	}
	if c.Personal != nil {
		if err := c.Personal.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Names.Version < 0 {
		errs = append(errs, errors.New("Names.Version must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("projection: config: %w", err)
	}
	return nil
}

// saramaConfig is a fresh sarama config per goka component: goka's builders
// write the client id into the config they are given, so sharing one would
// race.
func (c *Config) saramaConfig() *sarama.Config {
	s := goka.DefaultConfig()
	// kfake fails to decode OffsetFetch v6+ (sarama >= 2.4 protocol); 2.3
	// still has everything goka needs.
	s.Version = sarama.V2_3_0_0
	s.Consumer.IsolationLevel = sarama.ReadCommitted
	s.Consumer.Offsets.Initial = sarama.OffsetOldest
	s.Consumer.Offsets.AutoCommit.Interval = c.CommitInterval
	s.Producer.Compression = sarama.CompressionNone
	s.Consumer.Group.Session.Timeout = c.SessionTimeout
	s.Consumer.Group.Heartbeat.Interval = c.SessionTimeout / 4
	s.Producer.Partitioner = sarama.NewCustomHashPartitioner(Murmur2)
	if c.Sarama != nil {
		c.Sarama(s)
	}
	return s
}

func (c *Config) topicManagerConfig() *goka.TopicManagerConfig {
	t := goka.NewTopicManagerConfig()
	t.Table.Replication = c.ReplicationFactor
	t.Stream.Replication = c.ReplicationFactor
	// Dead letters and the intermediate topics are kept: a rebuild replays
	// the events topic, and dead letters wait for a human.
	t.Stream.Retention = -time.Millisecond
	return t
}

// gokaLogger sends goka's (and sarama's) printf logs to slog at debug level.
type gokaLogger struct{ l *slog.Logger }

func (g gokaLogger) Print(v ...any)                 { g.l.Debug(fmt.Sprint(v...)) }
func (g gokaLogger) Println(v ...any)               { g.l.Debug(fmt.Sprint(v...)) }
func (g gokaLogger) Printf(format string, v ...any) { g.l.Debug(fmt.Sprintf(format, v...)) }
