// Command processor runs one kcqrs command-processing worker: it joins the
// consumer group on the command topic and handles the partitions it is
// given, exactly once, for the example aggregates (account, folder).
//
//	processor [flags]                       run a worker
//	processor describe [--format mermaid]   print the topology and exit
//
// Every flag is also an environment variable (--commit-interval is
// KCQRS_COMMIT_INTERVAL); `processor --help` lists them all.
// With --transfers (the default) it also runs the transfer saga (package saga).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/ops"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/snapshots"
	"github.com/kcqrs/kcqrs/topology"
)

const intro = `usage: processor [flags]
       processor describe [--format text|mermaid] [flags]

Runs one exactly-once command-processing worker of the kcqrs consumer group.
Start one per machine (each with its own --instance-id and --state-dir);
the group spreads the command partitions among them.`

// settings is everything the processor binary can be told.
type settings struct {
	kafka       config.Kafka
	log         config.Log
	cfg         topology.Config
	partitions  int
	replication int
	httpAddr    string
	pprof       bool
	format      string // describe only
	transfers   bool
	memoryLimit int64

	transferRedrive time.Duration // saga.Config.RedriveAfter
	signingKey      string        // topology.Config.CommandSigningKey, saga.Config.SigningKey
	derivedKey      bool          // signingKey was derived (signing.go)
	history         bool          // history.go

	masterKeyFile, masterKey string // topology.Config.Personal (personal.go)
}

// bind declares every setting, with the topology's defaults.
func bind(s *config.Set, st *settings, describe bool) {
	d := topology.Defaults()
	s.Intro(intro)
	st.kafka.Bind(s, []string{"127.0.0.1:9092"})

	s.Group("Worker")
	s.String(&st.cfg.InstanceID, "instance-id", "", "stable id of this worker, unique among live ones; its transactional id is <group>-<instance-id> (default: the host name)")
	s.String(&st.cfg.Group, "group", d.Group, "consumer group of the workers")
	s.String(&st.cfg.StateDir, "state-dir", ".kcqrs/state", "directory of the Pebble snapshot stores (one per owned partition)")
	s.Bytes(&st.cfg.MemoryBudget, "memory-budget", d.MemoryBudget, "memory the worker is sized for: the block cache and the memtables get 1/8 each, the Go heap the rest (the default soft memory limit)")
	s.Bytes(&st.cfg.CacheBytes, "cache-size", 0, "Pebble block cache shared by all stores (0: --memory-budget/8)")
	s.Bytes(&st.memoryLimit, "memory-limit", 0, "soft limit of the Go runtime's memory, as GOMEMLIMIT: the garbage collector works harder near it (0: GOMEMLIMIT if set, else --memory-budget less the cache and memtables)")

	s.Group("Topics")
	s.String(&st.cfg.Topics.Commands, "commands-topic", d.Topics.Commands, "command topic (keyed by aggregate id)")
	s.String(&st.cfg.Topics.Events, "events-topic", d.Topics.Events, "event topic (infinite retention)")
	s.String(&st.cfg.Topics.Changelog, "changelog-topic", d.Topics.Changelog, "snapshot changelog topic (compacted)")
	s.String(&st.cfg.Topics.Replies, "reply-topic", d.Topics.Replies, "default reply topic, for commands that name none")
	s.List(&st.cfg.ReplyTopics, "reply-topics", nil, "other topics a command may name as its reply topic (kafka_replyTopic): names, or prefixes ending in * (replies-*)")
	s.List(&st.cfg.InternalTopics, "internal-topics", []string{"kcqrs-proj-*", "kcqrs-transfers-*", saga.RetiredReplyTopic}, "topics no reply may go to, whatever --reply-topics says (the topology's own and __* always; the projectors', the saga's state and its retired reply topic by default)")
	s.String(&st.cfg.Topics.DeadLetters, "dlq-topic", d.Topics.DeadLetters, "dead-letter topic")
	s.String(&st.cfg.SchemaTopic, "schema-topic", d.SchemaTopic, "compacted topic where workers publish their schemas and an older build learns a newer one's (rollbacks; docs/schemas.md); - disables it")
	bindPersonal(s, st)
	s.Int(&st.partitions, "partitions", int(d.Partitions), "partition count of topics created at start (existing ones keep theirs)")
	s.Int(&st.replication, "replication-factor", int(d.ReplicationFactor), "replication factor of topics created at start (-1: the broker's default)")

	s.Group("Processing")
	s.Duration(&st.cfg.CommitInterval, "commit-interval", d.CommitInterval, "longest time a transaction stays open while commands wait")
	s.Int(&st.cfg.MaxBatch, "max-batch", d.MaxBatch, "most commands in one transaction")
	s.Duration(&st.cfg.TransactionTimeout, "transaction-timeout", d.TransactionTimeout, "broker-side timeout of an open transaction (bounds how long a crashed worker blocks readers)")
	s.Int(&st.cfg.DedupeWindow, "dedupe-window", d.DedupeWindow, "recent command ids remembered per aggregate (retries within it are answered, not re-run)")
	s.Int(&st.cfg.MaxCommandBytes, "max-command-bytes", d.MaxCommandBytes, "largest command record (key, value, headers); larger ones are answered INVALID and dead-lettered; must leave 16KiB below --max-record-bytes")
	s.Int(&st.cfg.MaxRecordBytes, "max-record-bytes", d.MaxRecordBytes, "largest record produced (reply, event, snapshot, dead letter; franz-go's ProducerBatchMaxBytes): a command whose outputs are larger is answered and dead-lettered alone")
	s.Int(&st.cfg.BrokerMaxMessageBytes, "broker-max-message-bytes", d.BrokerMaxMessageBytes, "the brokers' (or output topics') max.message.bytes; outputs are checked against it too")
	s.Duration(&st.cfg.SessionTimeout, "session-timeout", d.SessionTimeout, "group session timeout: how long a crashed worker keeps its partitions; below --transaction-timeout")
	s.Duration(&st.cfg.RebalanceTimeout, "rebalance-timeout", d.RebalanceTimeout, "how long a rebalance waits for every member to rejoin")
	s.Duration(&st.cfg.HeartbeatInterval, "heartbeat-interval", d.HeartbeatInterval, "how often a worker heartbeats to the group (a member learns of a rebalance at its next heartbeat); at most a third of --session-timeout")
	s.Bool(&st.cfg.StaticMembership, "static", true, "static group membership with the instance id: a restarted worker gets its partitions back without a rebalance (--static=false: a new member at every start)")
	s.Int(&st.cfg.Standbys, "standbys", d.Standbys, "warm standby copies of each partition's store kept by other workers")
	s.Duration(&st.cfg.StandbyInterval, "standby-interval", d.StandbyInterval, "how often standby and not-yet-used stores catch up")
	s.Duration(&st.cfg.HangingTxnThreshold, "hanging-txn-threshold", d.HangingTxnThreshold, "report a command partition blocked by an open transaction this long (negative: off)")
	s.Bytes(&st.cfg.FetchMaxBytes, "fetch-max-bytes", d.FetchMaxBytes, "most bytes of one fetch response (bounds the memory of a worker consuming a backlog)")
	s.Bytes(&st.cfg.FetchMaxPartitionBytes, "fetch-max-partition-bytes", d.FetchMaxPartitionBytes, "most bytes of one partition in a fetch response")
	s.Int(&st.cfg.StateCacheEntries, "state-cache-entries", d.StateCacheEntries, "committed aggregate states kept decoded in memory across transactions")
	s.List(&st.cfg.SchemaRegistryURLs, "schema-registry", nil, "Confluent Schema Registry URLs: write events and snapshots in its wire format (default: Avro single-object encoding, no registry)")

	s.String(&st.cfg.Compression, "compression", d.Compression, "codec of everything the processor writes: none, gzip, snappy, lz4 or zstd (none and gzip are read by every client, kafkajs included; see docs/wire-contract.md)")

	s.String(&st.cfg.GroupProtocol, "group-protocol", d.GroupProtocol, "consumer group protocol: classic, or consumer (KIP-848, Kafka 4.0+)")
	s.Bool(&st.transfers, "transfers", true, "also run the transfer saga (group kcqrs-transfers; its legs are answered on --reply-topic)")
	s.Duration(&st.transferRedrive, "transfer-redrive-after", saga.DefaultRedriveAfter, "the saga sends the leg a transfer waits for (credit, completion or refund) again, with the same command id, when it has been pending this long")
	s.Secret(&st.signingKey, "transfer-signing-key", "secret signing the saga's transfer legs (HMAC-SHA256), the same on every worker: a leg without its signature is refused, so no client can credit an account itself. Required with --transfers when Kafka authenticates clients (SASL or a TLS client certificate); without authentication a key derived from --group is used, with a warning (prefer the environment variable to the flag)")

	s.Group("Operations")
	s.String(&st.httpAddr, "http-addr", ops.DefaultAddr, "listen address of /metrics, /healthz, /readyz (loopback by default; :8080 for all interfaces)")
	s.Bool(&st.pprof, "pprof", false, "also serve net/http/pprof under /debug/pprof/")
	s.Bool(&st.history, "history", true, "keep an index of the events topic (under --state-dir) and serve one aggregate's history on --http-addr: GET /v1/streams/{type}/{id}, GET /v1/aggregates/{type}/{id}?at_version=N|at_time=T (docs/history.md)")
	st.log.Bind(s)
	if describe {
		s.Group("Describe")
		s.String(&st.format, "format", "text", "output format: text or mermaid")
	}
}

// load parses args and the environment into settings and a validated
// topology config, reporting every problem at once.
func load(args []string, lookup func(string) (string, bool), describe bool) (*settings, *config.Set, error) {
	st := &settings{}
	s := config.New("processor", "")
	bind(s, st, describe)
	err := s.Parse(args, lookup)
	if errors.Is(err, config.ErrHelp) {
		return nil, s, err
	}
	errs := []error{err}
	if len(s.Args()) > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", s.Args()))
	}
	if st.cfg.InstanceID == "" {
		st.cfg.InstanceID = hostname()
	}
	st.cfg.Brokers = st.kafka.Brokers
	errs = append(errs, signingKey(st), personalKey(st))
	st.cfg.Partitions = int32(st.partitions)
	st.cfg.ReplicationFactor = int16(st.replication)
	if st.replication == 0 || st.replication < -1 || st.replication > 1<<14 {
		errs = append(errs, fmt.Errorf("--replication-factor %d: want -1 or 1 or more", st.replication))
	}
	errs = append(errs, st.kafka.Validate(), st.log.Validate())
	if describe && st.format != "text" && st.format != "mermaid" {
		errs = append(errs, fmt.Errorf("--format %q: want text or mermaid", st.format))
	}
	if st.memoryLimit < 0 {
		errs = append(errs, fmt.Errorf("--memory-limit %d < 0", st.memoryLimit))
	}
	if err := st.cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	return st, s, errors.Join(errs...)
}

func main() {
	args := os.Args[1:]
	describe := len(args) > 0 && args[0] == "describe"
	if describe {
		args = args[1:]
	}
	st, s, err := load(args, nil, describe)
	s.ExitOnError(err)
	reg, err := examples.Registry()
	if err != nil {
		fatal(err)
	}
	if describe {
		d := topology.Describe(st.cfg, reg)
		if st.format == "mermaid" {
			fmt.Print(d.Mermaid())
		} else {
			fmt.Print(d.Text())
		}
		return
	}
	applyMemoryLimit(st)
	// SIGTERM (or Ctrl-C) cancels ctx: Run stops fetching, commits or
	// aborts the open transaction, closes the stores and leaves the group,
	// so that a restart restores nothing and the partitions move at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, st, reg, os.Stderr, nil); err != nil {
		fatal(err)
	}
}

// applyMemoryLimit sets the runtime's soft memory limit from --memory-limit.
// Most of a busy worker's resident memory is the garbage collector's headroom
// over a live heap of 100-150 MiB, not data it needs (BENCHMARKS.md). Zero
// derives it from --memory-budget (topology.ApplySoftMemoryLimit), unless
// GOMEMLIMIT or an earlier call set one.
func applyMemoryLimit(st *settings) {
	if st.memoryLimit > 0 {
		debug.SetMemoryLimit(st.memoryLimit)
		return
	}
	topology.ApplySoftMemoryLimit(st.cfg)
}

// run starts the HTTP endpoints and the worker and runs until ctx ends.
// started, when set, receives the endpoints' address.
func run(ctx context.Context, st *settings, reg *topology.Registry, logOut io.Writer, started func(addr string)) error {
	log, err := st.log.Logger(logOut)
	if err != nil {
		return err
	}
	st.cfg.Logger = log
	switch {
	case st.derivedKey:
		log.Warn("no --transfer-signing-key: transfer legs are signed with a key derived from the group name, which anyone can compute; acceptable only on a Kafka where any client may write any topic (set the key on every worker to stop forged legs)")
	case len(st.cfg.CommandSigningKey) == 0:
		log.Warn("no --transfer-signing-key: this worker refuses every transfer leg (unsigned_command); set the deployment's key if any worker runs --transfers")
	}
	opts, err := st.kafka.Opts()
	if err != nil {
		return err
	}
	st.cfg.ClientOpts = append(st.cfg.ClientOpts, opts...)

	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// kprom registers its collectors once per client: attach it to the
	// session's client, the one doing the work.
	st.cfg.SessionClientOpts = append(st.cfg.SessionClientOpts, kgo.WithHooks(kprom.NewMetrics("kcqrs_kafka", kprom.Registry(promReg))))

	var proc *topology.Processor
	var metrics *ops.Metrics
	assigned := func() []int32 {
		if proc == nil {
			return nil
		}
		parts := proc.Assigned()
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		return parts
	}
	// The endpoints start after proc is set; scrapes read its live state.
	partitionStates := func() []ops.PartitionState {
		if proc == nil {
			return nil
		}
		var out []ops.PartitionState
		for _, ps := range proc.PartitionStates() {
			out = append(out, ops.PartitionState{Partition: ps.Partition, Role: string(ps.Role), Restored: ps.Restored, Total: ps.Total, Lag: ps.Lag, Ready: ps.Ready})
		}
		return out
	}
	ready := func() bool { return proc != nil && proc.Ready() }
	metrics = ops.NewMetrics(ops.MetricsOptions{
		Registerer: promReg,
		Partitions: partitionStates,
		Stats: func() topology.Stats {
			if proc == nil {
				return topology.Stats{}
			}
			return proc.Stats()
		},
		Unreadable: func() []topology.Unreadable {
			if proc == nil {
				return nil
			}
			return proc.Unreadable()
		},
		StoreDirs: func() map[int32]string {
			dirs := map[int32]string{}
			for _, p := range assigned() {
				dirs[p] = snapshots.PartitionDir(st.cfg.StateDir, st.cfg.Topics.Changelog, p)
			}
			return dirs
		},
	})
	st.cfg.Observer = metrics
	api, closeHistory, err := startHistory(st, reg, log)
	if err != nil {
		return err
	}
	defer closeHistory()
	proc, err = topology.New(st.cfg, reg)
	if err != nil {
		return err
	}
	// Problem: partitions held back by data this build cannot read (a
	// rollback) are named by /readyz and /healthz.
	problem := func() string {
		if proc == nil {
			return ""
		}
		return proc.Problem()
	}
	srv, err := ops.Start(ops.Options{Addr: st.httpAddr, Gatherer: promReg, Ready: ops.ReadyFunc(ready), Problem: problem, Pprof: st.pprof, Logger: log, API: api})
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("serving /metrics, /healthz, /readyz", "addr", srv.Addr().String(), "pprof", st.pprof)
	if started != nil {
		started(srv.Addr().String())
	}
	if err := checkKafka(ctx, &st.kafka, log); err != nil {
		return err
	}
	if !st.transfers {
		return stopped(log, proc.Run(ctx))
	}
	// The saga's group gets the processor's timeouts: a crashed worker's
	// transfers then resume as fast as its commands (franz-go's defaults
	// would hold them 45 s and make a stopping worker wait up to 60 s).
	sg, err := saga.New(saga.Config{
		Brokers: st.cfg.Brokers, InstanceID: st.cfg.InstanceID, Events: st.cfg.Topics.Events, Commands: st.cfg.Topics.Commands,
		TransactionTimeout: st.cfg.TransactionTimeout, SessionTimeout: st.cfg.SessionTimeout, RebalanceTimeout: st.cfg.RebalanceTimeout,
		Logger: log, ClientOpts: st.cfg.ClientOpts, RedriveAfter: st.transferRedrive, SigningKey: st.cfg.CommandSigningKey,
	}, reg)
	if err != nil {
		return err
	}
	promReg.MustRegister(sg.Collector())
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sagaDone := make(chan error, 1)
	go func() {
		err := sg.Run(ctx)
		if err != nil {
			// A worker without its saga would debit transfers that never end.
			cancel(fmt.Errorf("transfer saga: %w", err))
		}
		sagaDone <- err
	}()
	err = proc.Run(ctx)
	cancel(nil)
	<-sagaDone
	// When the saga stopped the worker, its error is the cause: the worker's
	// own (often "context canceled" from a call it was making) is a symptom.
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	return stopped(log, err)
}

// checkKafka fails at once, naming the cause (a wrong password names the
// mechanism and user), when Kafka refuses the worker's TLS or login, instead
// of franz-go's retries ending in EOF half a minute later; while no broker
// answers at all it retries with a backoff, logging every attempt.
func checkKafka(ctx context.Context, k *config.Kafka, log *slog.Logger) error {
	wait := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := k.Check(ctx, 10*time.Second)
		var ce *config.ConnError
		if ctx.Err() != nil {
			return nil // stopped before it began
		}
		if err == nil || !errors.As(err, &ce) || !ce.Retriable() {
			return err
		}
		log.Error("cannot connect to Kafka", "err", err, "attempt", attempt, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// stopped logs a clean stop: Run returned without error after SIGTERM, so
// the open transaction ended, the stores closed and the group was left.
func stopped(log *slog.Logger, err error) error {
	if err == nil {
		log.Info("processor stopped cleanly")
	}
	return err
}

func hostname() string {
	h, _ := os.Hostname()
	if h == "" {
		return "worker-0"
	}
	return h
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "processor:", err)
	os.Exit(1)
}
