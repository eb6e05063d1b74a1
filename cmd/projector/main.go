// Command projector builds the read models from the events topic (goka
// groups, see package projection) and serves them over HTTP/JSON:
//
//	projector --brokers 127.0.0.1:9092 --http 127.0.0.1:8088
//	projector --version 2 --serve-versions 1,2   # rebuild beside version 1, switch when caught up
//
// Every flag is also an environment variable with the prefix
// KCQRS_PROJECTOR_ (--state-dir is KCQRS_PROJECTOR_STATE_DIR): the
// processor's variables (KCQRS_STATE_DIR, ...) never reach a projector
// started from the same environment. `projector --help` lists them all.
// Metrics, /healthz and /readyz are served on --ops-addr.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/ops"
	"github.com/kcqrs/kcqrs/projection"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
)

const intro = `usage: projector [flags]

Builds the read models (accounts, owners, totals) of one version from the
events topic and serves queries on them. Rebuild beside a live version with
--version N+1 --serve-versions N,N+1: queries switch once it has caught up.`

// EnvPrefix is the prefix of the projector's environment variables.
const EnvPrefix = "KCQRS_PROJECTOR_"

// DefaultOpsAddr is where /metrics, /healthz and /readyz listen by default:
// loopback only, beside the query API's 127.0.0.1:8088.
const DefaultOpsAddr = "127.0.0.1:8089"

// settings is everything the projector binary can be told.
type settings struct {
	kafka            config.Kafka
	log              config.Log
	proj             projection.Config
	serveVersions    []string
	queryOnly        bool
	httpAddr         string
	noHTTP           bool
	opsAddr          string
	pprof            bool
	progressInterval time.Duration

	versions []int // parsed serveVersions

	masterKeyFile, keysTopic string // personal.go
	masterKey                *shred.MasterKey
}

func bind(s *config.Set, st *settings) {
	s.Intro(intro)
	st.kafka.Bind(s, []string{"127.0.0.1:9092"})

	s.Group("Read models")
	s.String(&st.proj.StateDir, "state-dir", ".kcqrs/projector", "directory of the tables' and views' Pebble stores (one per projector process)")
	s.String(&st.proj.EventsTopic, "events-topic", "events", "events topic")
	s.String(&st.proj.Names.Prefix, "prefix", "kcqrs-proj", "prefix of the groups and topics of the read models")
	s.Int(&st.proj.Names.Version, "version", 1, "version of the read models this projector builds")
	s.Bool(&st.queryOnly, "query-only", false, "serve queries only, build nothing")
	s.Duration(&st.proj.SessionTimeout, "session-timeout", 10*time.Second, "consumer-group session timeout: how long a crashed projector's partitions wait before a restart or another projector takes them")
	s.Int(&st.proj.ReplicationFactor, "replication", 1, "replication factor of the topics the projector creates")

	s.Group("Query API")
	s.String(&st.httpAddr, "http", "127.0.0.1:8088", "listen address of the read-only query API (loopback by default: it has no authentication)")
	s.List(&st.serveVersions, "serve-versions", nil, "versions the query API answers from, oldest first; it switches to a newer one once caught up (default: --version)")
	s.Bool(&st.noHTTP, "no-http", false, "build the read models only, serve no queries")
	s.String(&st.masterKeyFile, "master-key-file", "", "master key of personal data (the processor's): the query API then opens fields marked kcqrs.personal, which the tables hold sealed, and shows [erased] for erased aggregates (docs/erasure.md)")
	s.String(&st.keysTopic, "keys-topic", "kcqrs-keys", "the processor's keys topic of personal data")

	s.Group("Operations")
	s.String(&st.opsAddr, "ops-addr", DefaultOpsAddr, "listen address of /metrics, /healthz, /readyz (loopback by default; :8089 for all interfaces)")
	s.Bool(&st.pprof, "pprof", false, "also serve net/http/pprof under /debug/pprof/")
	s.Duration(&st.progressInterval, "progress-interval", 5*time.Second, "how often the groups' offsets are read for the lag metrics and /readyz")
	st.log.Bind(s)
}

// load parses args and the environment, reporting every problem at once.
func load(args []string, lookup func(string) (string, bool)) (*settings, *config.Set, error) {
	st := &settings{}
	s := config.New("projector", EnvPrefix)
	bind(s, st)
	err := s.Parse(args, lookup)
	if errors.Is(err, config.ErrHelp) {
		return nil, s, err
	}
	errs := []error{err}
	if len(s.Args()) > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", s.Args()))
	}
	errs = append(errs, st.kafka.Validate(), st.log.Validate())
	st.proj.Brokers = st.kafka.Brokers
	if st.proj.StateDir == "" {
		errs = append(errs, errors.New("--state-dir: empty"))
	}
	if st.proj.Names.Version < 1 {
		errs = append(errs, fmt.Errorf("--version %d: want 1 or more", st.proj.Names.Version))
	}
	if st.proj.ReplicationFactor < 1 || st.proj.ReplicationFactor > 1<<14 {
		errs = append(errs, fmt.Errorf("--replication %d: want 1 or more", st.proj.ReplicationFactor))
	}
	// Brokers refuse sessions below group.min.session.timeout.ms (6s by
	// default); a zero would be taken as "the default" below us.
	if st.proj.SessionTimeout < time.Second {
		errs = append(errs, fmt.Errorf("--session-timeout %v: want 1s or more", st.proj.SessionTimeout))
	}
	if st.progressInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("--progress-interval %v: want 10ms or more", st.progressInterval))
	}
	if st.queryOnly && st.noHTTP {
		errs = append(errs, errors.New("--query-only and --no-http together leave nothing to do"))
	}
	for _, v := range st.serveVersions {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("--serve-versions: %q is not a version", v))
			continue
		}
		if len(st.versions) > 0 && n <= st.versions[len(st.versions)-1] {
			errs = append(errs, fmt.Errorf("--serve-versions: %d after %d: want ascending versions", n, st.versions[len(st.versions)-1]))
		}
		st.versions = append(st.versions, n)
	}
	if st.masterKeyFile != "" {
		var err error
		if st.masterKey, err = shred.LoadMasterKey(st.masterKeyFile); err != nil {
			errs = append(errs, fmt.Errorf("--master-key-file: %w", err))
		}
	}
	return st, s, errors.Join(errs...)
}

func main() {
	st, s, err := load(os.Args[1:], nil)
	s.ExitOnError(err)
	reg, err := examples.Registry()
	if err != nil {
		fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, st, reg, os.Stderr, nil); err != nil {
		fatal(err)
	}
}

// run starts the ops endpoints, waits until Kafka can be reached and
// logged in to (saying what is wrong meanwhile, see waitForKafka), then
// starts the projector and the query API and runs until ctx ends. started,
// when set, receives the ops address as soon as the endpoints listen.
func run(ctx context.Context, st *settings, reg *topology.Registry, logOut io.Writer, started func(opsAddr string)) error {
	log, err := st.log.Logger(logOut)
	if err != nil {
		return err
	}
	opts, err := st.kafka.Opts()
	if err != nil {
		return err
	}
	adjust, err := saramaAdjuster(&st.kafka)
	if err != nil {
		return err
	}
	cfg := projection.ServiceConfig{
		Projection: st.proj, Project: !st.queryOnly, ServeVersions: st.versions,
		Addr: st.httpAddr, NoHTTP: st.noHTTP,
	}
	cfg.Projection.Logger = log
	cfg.Projection.Registry = reg
	cfg.Projection.ClientOpts = opts
	cfg.Projection.Sarama = adjust

	// The endpoints come first: a projector that cannot reach Kafka says
	// so on /healthz and /readyz instead of being silent.
	var mon atomic.Pointer[monitor]
	var problem atomic.Pointer[string]
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := ops.Start(ops.Options{Addr: st.opsAddr, Gatherer: promReg, Pprof: st.pprof, Logger: log,
		Ready: ops.ReadyFunc(func() bool { m := mon.Load(); return m != nil && m.ready() }),
		Problem: func() string {
			if p := problem.Load(); p != nil {
				return *p
			}
			return ""
		}})
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("serving /metrics, /healthz, /readyz", "addr", srv.Addr().String(), "pprof", st.pprof)
	if started != nil {
		started(srv.Addr().String())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	defer cl.Close()
	var aclCheck func(context.Context) error
	if !st.queryOnly {
		need := projectorChecks(st)
		aclCheck = func(ctx context.Context) error {
			return topology.CheckPermissionSet(ctx, cl, onlyToCreate(ctx, cl, need))
		}
	}
	if err := waitForKafka(ctx, &st.kafka, aclCheck, log, func(p string) { problem.Store(&p) }); err != nil {
		return nil // stopped while waiting
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if st.masterKey != nil {
		if cfg.OpenPersonal, cfg.Projection.Personal, err = followKeys(ctx, opts, st, log); err != nil {
			return err
		}
	}
	svc, err := projection.StartService(ctx, cfg)
	if err != nil {
		return err
	}
	m := newMonitor(cl, svc, cfg, log)
	promReg.MustRegister(m)
	mon.Store(m)
	monDone := make(chan struct{})
	go func() { m.run(ctx, st.progressInterval); close(monDone) }()
	defer func() { cancel(); <-monDone }()
	if svc.Addr() != "" {
		// The service serves its own version when none is listed.
		versions := cfg.ServeVersions
		if len(versions) == 0 {
			versions = []int{cfg.Projection.Names.Version}
		}
		log.Info("query API listening", "addr", "http://"+svc.Addr(), "versions", versions)
	}
	return svc.Wait()
}

// projectorChecks are the permissions of topology.ProjectorPermissions the
// start-up check can ask about, made concrete for this version: Read on the
// events topic, on each group, and the prefixed topic permissions on each
// topic of the version (tables, intermediate and dead-letter topics), by
// name: the brokers report the operations allowed on a topic that does not
// exist yet to a principal that may describe it. Create is only needed
// while a topic is missing (goka creates it): onlyToCreate keeps it for
// those.
func projectorChecks(st *settings) []topology.Permission {
	var need []topology.Permission
	names := st.proj.Names
	topics := append(names.Tables(), names.Intermediate()...)
	for _, g := range names.Groups() {
		topics = append(topics, string(projection.DeadLetters(g)))
	}
	for _, p := range topology.ProjectorPermissions(st.proj.EventsTopic, st.proj.Names.Prefix+"-") {
		if !p.Prefixed {
			need = append(need, p)
			continue
		}
		var concrete []string
		switch {
		case p.ResourceType == kmsg.ACLResourceTypeGroup:
			for _, g := range names.Groups() {
				concrete = append(concrete, string(g))
			}
		case p.ResourceType == kmsg.ACLResourceTypeTopic:
			concrete = topics
		}
		for _, name := range concrete {
			q := p
			q.Prefixed, q.Resource = false, name
			need = append(need, q)
		}
	}
	return need
}

// onlyToCreate drops from need the Create permissions of topics that exist:
// a missing Create then fails the start-up check, naming the grant, instead
// of goka's topic creation (an exit naming no permission).
func onlyToCreate(ctx context.Context, cl *kgo.Client, need []topology.Permission) []topology.Permission {
	isCreate := func(p topology.Permission) bool {
		return p.ResourceType == kmsg.ACLResourceTypeTopic && p.Operation == kmsg.ACLOperationCreate
	}
	var topics []string
	for _, p := range need {
		if isCreate(p) {
			topics = append(topics, p.Resource)
		}
	}
	if len(topics) == 0 {
		return need
	}
	td, err := kadm.NewClient(cl).ListTopics(ctx, topics...)
	if err != nil {
		return need // unknown: the check asks for every one
	}
	var out []topology.Permission
	for _, p := range need {
		if d, ok := td[p.Resource]; isCreate(p) && ok && d.Err == nil {
			continue // exists
		}
		out = append(out, p)
	}
	return out
}

// Backoff of waitForKafka between attempts: doubling from the first to the
// last.
var (
	kafkaRetryFirst = 500 * time.Millisecond
	kafkaRetryMax   = 30 * time.Second
)

// waitForKafka checks the connection (config.Kafka.Check) and then, when
// set, the ACLs (aclCheck) until both pass,
// logging every failure at once at ERROR with its cause (the broker, the
// stage, the SASL mechanism and user, never the password) and handing it to
// setProblem, so /healthz and /readyz say what is wrong; retries back off.
// It returns ctx's error when ctx ends first.
func waitForKafka(ctx context.Context, k *config.Kafka, aclCheck func(context.Context) error, log *slog.Logger, setProblem func(string)) error {
	wait := kafkaRetryFirst
	for attempt := 1; ; attempt++ {
		err := k.Check(ctx, 10*time.Second)
		if err == nil && aclCheck != nil {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = aclCheck(cctx)
			cancel()
		}
		if err == nil {
			if attempt > 1 {
				log.Info("Kafka reachable again", "attempts", attempt)
			}
			setProblem("")
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		setProblem(err.Error())
		log.Error("cannot use Kafka", "err", err, "attempt", attempt, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, kafkaRetryMax)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "projector:", err)
	os.Exit(1)
}
