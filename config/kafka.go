package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms Kafka accepts and kcqrs supports.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Kafka is how a kcqrs binary connects to Kafka.
type Kafka struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// TLS enables TLS; implied by any of the TLS files.
	TLS bool
	// TLSCAFile is a PEM file of CA certificates to trust instead of the
	// system pool.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are the client certificate and key (PEM)
	// for mutual TLS.
	TLSCertFile, TLSKeyFile string
	// TLSServerName overrides the name checked against the broker's
	// certificate (default: the host of the broker address).
	TLSServerName string
	// TLSInsecureSkipVerify turns off certificate verification: tests only.
	TLSInsecureSkipVerify bool
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; "" for none.
	SASLMechanism string
	// SASLUser and SASLPassword are the SASL credentials.
	SASLUser, SASLPassword string
}

// Bind binds the Kafka settings to s under the group "Kafka connection".
func (k *Kafka) Bind(s *Set, defaultBrokers []string) {
	s.Group("Kafka connection")
	s.List(&k.Brokers, "brokers", defaultBrokers, "seed brokers, comma-separated host:port")
	s.Bool(&k.TLS, "tls", false, "connect with TLS (implied by --tls-ca, --tls-cert)")
	s.String(&k.TLSCAFile, "tls-ca", "", "PEM file of the CA certificates to trust (default: the system's)")
	s.String(&k.TLSCertFile, "tls-cert", "", "PEM client certificate, for mutual TLS (with --tls-key)")
	s.String(&k.TLSKeyFile, "tls-key", "", "PEM key of the client certificate")
	s.String(&k.TLSServerName, "tls-server-name", "", "name to verify in the broker's certificate (default: the broker's host)")
	s.Bool(&k.TLSInsecureSkipVerify, "tls-insecure-skip-verify", false, "do not verify the broker's certificate (tests only)")
	s.String(&k.SASLMechanism, "sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default: no SASL)")
	s.String(&k.SASLUser, "sasl-user", "", "SASL user name")
	s.Secret(&k.SASLPassword, "sasl-password", "SASL password (prefer the environment variable to the flag)")
}

func (k *Kafka) tlsWanted() bool {
	return k.TLS || k.TLSCAFile != "" || k.TLSCertFile != "" || k.TLSKeyFile != "" || k.TLSServerName != "" || k.TLSInsecureSkipVerify
}

// Validate reports every problem at once.
func (k *Kafka) Validate() error {
	var errs []error
	if len(k.Brokers) == 0 {
		errs = append(errs, errors.New("--brokers: no seed brokers"))
	}
	for _, b := range k.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("--brokers: %q is not host:port", b))
		}
	}
	if (k.TLSCertFile == "") != (k.TLSKeyFile == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	for flag, f := range map[string]string{"tls-ca": k.TLSCAFile, "tls-cert": k.TLSCertFile, "tls-key": k.TLSKeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, fmt.Errorf("--%s: %w", flag, err))
		}
	}
	switch strings.ToUpper(k.SASLMechanism) {
	case "":
		if k.SASLUser != "" || k.SASLPassword != "" {
			errs = append(errs, errors.New("--sasl-user/--sasl-password given without --sasl-mechanism"))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if k.SASLUser == "" {
			errs = append(errs, errors.New("--sasl-user is required with --sasl-mechanism"))
		}
		if k.SASLPassword == "" {
			errs = append(errs, errors.New("--sasl-password (or KCQRS_SASL_PASSWORD) is required with --sasl-mechanism"))
		}
	default:
		errs = append(errs, fmt.Errorf("--sasl-mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", k.SASLMechanism))
	}
	return errors.Join(errs...)
}

// Opts returns the franz-go options of the connection: seed brokers, the
// TLS dialer and the SASL mechanism. It validates first.
func (k *Kafka) Opts() ([]kgo.Opt, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	opts := []kgo.Opt{kgo.SeedBrokers(k.Brokers...)}
	if k.tlsWanted() {
		tc, err := k.TLSConfig()
		if err != nil {
			return nil, err
		}
		// franz-go clones the config per dial and sets ServerName to the
		// broker's host when it is empty.
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if m := k.mechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// TLSConfig builds the client TLS configuration from the files.
func (k *Kafka) TLSConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: k.TLSServerName, InsecureSkipVerify: k.TLSInsecureSkipVerify} //nolint:gosec // opt-in, for tests
	if k.TLSCAFile != "" {
		pem, err := os.ReadFile(k.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca: %s holds no PEM certificate", k.TLSCAFile)
		}
		tc.RootCAs = pool
	}
	if k.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(k.TLSCertFile, k.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (k *Kafka) mechanism() sasl.Mechanism {
	switch strings.ToUpper(k.SASLMechanism) {
	case SASLPlain:
		return plain.Auth{User: k.SASLUser, Pass: k.SASLPassword}.AsMechanism()
	case SASLScramSHA256:
		return scram.Auth{User: k.SASLUser, Pass: k.SASLPassword}.AsSha256Mechanism()
	case SASLScramSHA512:
		return scram.Auth{User: k.SASLUser, Pass: k.SASLPassword}.AsSha512Mechanism()
	}
	return nil
}
