package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
)

// brokerConfig is what `kcqrs broker` can be told.
type brokerConfig struct {
	port       int
	dataDir    string
	compaction time.Duration
	secure     bool   // all of the below, with generated passwords
	tls        bool   // TLS with a throwaway CA in <data-dir>/tls
	mutualTLS  bool   // and client certificates required
	sasl       string // mechanism of the users; "" for none
	acls       bool   // enforce ACLs: each kcqrs user gets exactly its list
}

// The users of a secured broker: each gets exactly the permissions of its
// binary (topology.ProcessorPermissions and SagaPermissions,
// ProjectorPermissions, CLIPermissions); admin is a superuser.
var brokerUsers = []string{"admin", "kcqrs-processor", "kcqrs-projector", "kcqrs-cli"}

// brokerSettings binds the broker's settings; their variables are
// KCQRS_BROKER_<FLAG> so they cannot collide with a processor's.
func brokerSettings(s *config.Set) *brokerConfig {
	bc := &brokerConfig{}
	s.Intro(`usage: kcqrs broker [flags]

Runs the embedded Kafka-protocol broker (franz-go's kfake) on 127.0.0.1, with
its logs persisted, for local development. Not a production Kafka. With
--secure it requires mutual TLS (a throwaway CA and certificates generated
into <data-dir>/tls), SASL SCRAM-SHA-256 logins and ACLs, and writes the
connection settings of each kcqrs binary to <data-dir>/<binary>.env.`)
	s.Group("Broker")
	s.Int(&bc.port, "port", 9092, "port on 127.0.0.1")
	s.String(&bc.dataDir, "data-dir", ".kcqrs/broker", "directory the broker persists its logs to")
	s.Duration(&bc.compaction, "compaction-interval", 30*time.Second, "how often compacted topics are cleaned")
	s.Group("Security (local trials)")
	s.Bool(&bc.secure, "secure", false, "all of --tls --mutual-tls --sasl-mechanism SCRAM-SHA-256 --acls, with generated passwords")
	s.Bool(&bc.tls, "tls", false, "serve TLS with a throwaway CA and certificates generated into <data-dir>/tls (kept across restarts)")
	s.Bool(&bc.mutualTLS, "mutual-tls", false, "require client certificates signed by that CA (implies --tls)")
	s.String(&bc.sasl, "sasl-mechanism", "", "require SASL logins: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, as users admin (superuser), kcqrs-processor, kcqrs-projector and kcqrs-cli")
	s.Bool(&bc.acls, "acls", false, "enforce ACLs: each kcqrs user gets exactly the permissions its binary documents (needs --sasl-mechanism)")
	return bc
}

func (bc *brokerConfig) validate() error {
	var errs []error
	if bc.port < 1 || bc.port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d: want 1..65535", bc.port))
	}
	if bc.compaction < time.Millisecond {
		errs = append(errs, fmt.Errorf("--compaction-interval %v: want 1ms or more", bc.compaction))
	}
	if bc.secure {
		bc.tls, bc.mutualTLS, bc.acls = true, true, true
		if bc.sasl == "" {
			bc.sasl = config.SASLScramSHA256
		}
	}
	if bc.mutualTLS {
		bc.tls = true
	}
	bc.sasl = strings.ToUpper(bc.sasl)
	switch bc.sasl {
	case "", config.SASLPlain, config.SASLScramSHA256, config.SASLScramSHA512:
	default:
		errs = append(errs, fmt.Errorf("--sasl-mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", bc.sasl))
	}
	if bc.acls && bc.sasl == "" {
		errs = append(errs, errors.New("--acls needs --sasl-mechanism: ACLs are per user"))
	}
	return errors.Join(errs...)
}

func runBroker(args []string) error {
	s := config.New("broker", config.DefaultPrefix+"BROKER_")
	bc := brokerSettings(s)
	err := s.Parse(args, nil)
	if errors.Is(err, config.ErrHelp) {
		s.Usage(os.Stdout)
		return nil
	}
	if err := errors.Join(err, bc.validate()); err != nil {
		return fmt.Errorf("broker: invalid configuration:\n%w", err)
	}
	c, envFiles, err := startBroker(bc)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Printf("embedded Kafka-protocol broker on %v (data in %s); Ctrl-C to stop\n", c.ListenAddrs(), bc.dataDir)
	for _, f := range envFiles {
		fmt.Printf("  connection settings: %s\n", f)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// startBroker starts the broker bc describes and, when it is secured,
// writes <data-dir>/<user>.env for each user: the variables that connect
// the processor (KCQRS_), the projector (KCQRS_PROJECTOR_) and the CLI
// (KCQRS_) to it.
func startBroker(bc *brokerConfig) (*kfake.Cluster, []string, error) {
	var extra []kfake.Opt
	var certs embedded.Certs
	if bc.tls {
		var err error
		if certs, err = embedded.LoadOrWriteCerts(filepath.Join(bc.dataDir, "tls")); err != nil {
			return nil, nil, err
		}
		tc, err := certs.ServerTLS(bc.mutualTLS)
		if err != nil {
			return nil, nil, err
		}
		extra = append(extra, kfake.TLS(tc))
	}
	passwords := map[string]string{}
	if bc.sasl != "" {
		var err error
		if passwords, err = loadOrMakePasswords(filepath.Join(bc.dataDir, "passwords")); err != nil {
			return nil, nil, err
		}
		extra = append(extra, kfake.EnableSASL(), kfake.Superuser(bc.sasl, "admin", passwords["admin"]))
		for _, u := range brokerUsers[1:] {
			var acls []kfake.ACL
			if bc.acls {
				acls = topologytest.ACLs(userPermissions(u))
			}
			extra = append(extra, kfake.User(bc.sasl, u, passwords[u], acls...))
		}
		if bc.acls {
			extra = append(extra, kfake.EnableACLs())
		}
	}
	c, err := embedded.Start(embedded.Options{Port: bc.port, DataDir: bc.dataDir, CompactionIntervalMs: int(bc.compaction.Milliseconds()), Extra: extra})
	if err != nil {
		return nil, nil, err
	}
	if !bc.tls && bc.sasl == "" {
		return c, nil, nil
	}
	// The processors' shared secret of the transfer legs' signatures
	// (required on an authenticating Kafka): generated once, like the
	// passwords.
	legKey, err := loadOrMakeSecret(filepath.Join(bc.dataDir, "transfer-signing-key"))
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	var files []string
	for _, u := range brokerUsers {
		k := config.Kafka{Brokers: c.ListenAddrs()}
		if bc.tls {
			k.TLSCAFile = certs.CAFile
		}
		if bc.mutualTLS {
			k.TLSCertFile, k.TLSKeyFile = certs.ClientCertFile, certs.ClientKeyFile
		}
		if bc.sasl != "" {
			k.SASLMechanism, k.SASLUser, k.SASLPassword = bc.sasl, u, passwords[u]
		}
		prefix := config.DefaultPrefix
		if u == "kcqrs-projector" {
			prefix += "PROJECTOR_"
		}
		f := filepath.Join(bc.dataDir, u+".env")
		env := envFile(k, prefix)
		if u == "kcqrs-processor" {
			env += prefix + "TRANSFER_SIGNING_KEY=" + legKey + "\n"
		}
		if err := os.WriteFile(f, []byte(env), 0o600); err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("broker: %w", err)
		}
		files = append(files, f)
	}
	return c, files, nil
}

// userPermissions are the ACLs of a kcqrs user: its binary's list, with the
// transactional ids as prefixes (any instance id).
func userPermissions(user string) []topology.Permission {
	var perms []topology.Permission
	switch user {
	case "kcqrs-processor":
		perms = topology.ProcessorPermissions(topology.Config{InstanceID: "x"})
		perms = append(perms, topology.SagaPermissions(topology.SagaNames{Events: "events", Commands: "commands", State: "kcqrs-transfers-state", Group: "kcqrs-transfers", InstanceID: "x"})...)
	case "kcqrs-projector":
		perms = topology.ProjectorPermissions("events", "kcqrs-proj-")
	case "kcqrs-cli":
		perms = topology.CLIPermissions(topology.Config{}, "kcqrs-proj-")
	}
	for i, p := range perms {
		if p.ResourceType == kmsg.ACLResourceTypeTransactionalId {
			perms[i].Resource, perms[i].Prefixed = strings.TrimSuffix(p.Resource, "x"), true
		}
	}
	return perms
}

// envFile is k as environment variables with prefix, for `set -a; .
// file` or docker's --env-file.
func envFile(k config.Kafka, prefix string) string {
	var b strings.Builder
	put := func(name, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s%s=%s\n", prefix, name, v)
		}
	}
	put("BROKERS", strings.Join(k.Brokers, ","))
	put("TLS_CA", abs(k.TLSCAFile))
	put("TLS_CERT", abs(k.TLSCertFile))
	put("TLS_KEY", abs(k.TLSKeyFile))
	put("SASL_MECHANISM", k.SASLMechanism)
	put("SASL_USER", k.SASLUser)
	put("SASL_PASSWORD", k.SASLPassword)
	return b.String()
}

func abs(f string) string {
	if f == "" {
		return ""
	}
	if a, err := filepath.Abs(f); err == nil {
		return a
	}
	return f
}

// loadOrMakePasswords keeps one random password per user in file, so that
// a restarted broker keeps its users' passwords.
// loadOrMakeSecret returns the secret kept in file, writing a random one
// there first if there is none.
func loadOrMakeSecret(file string) (string, error) {
	if b, err := os.ReadFile(file); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	r := make([]byte, 32)
	if _, err := rand.Read(r); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", fmt.Errorf("broker: %w", err)
	}
	if err := os.WriteFile(file, []byte(hex.EncodeToString(r)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("broker: %w", err)
	}
	return hex.EncodeToString(r), nil
}

func loadOrMakePasswords(file string) (map[string]string, error) {
	out := map[string]string{}
	if b, err := os.ReadFile(file); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if u, p, ok := strings.Cut(line, "="); ok {
				out[u] = p
			}
		}
	}
	var b strings.Builder
	for _, u := range brokerUsers {
		if out[u] == "" {
			r := make([]byte, 12)
			if _, err := rand.Read(r); err != nil {
				return nil, err
			}
			out[u] = hex.EncodeToString(r)
		}
		fmt.Fprintf(&b, "%s=%s\n", u, out[u])
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	return out, nil
}
