package config_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/embedded"
)

// TestCheckNamesTheCause: every way of failing to connect or log in is
// answered by Check with a *ConnError naming the stage, the mechanism and
// the user, never the password, and a right configuration passes.
func TestCheckNamesTheCause(t *testing.T) {
	t.Parallel()
	certs, err := embedded.LoadOrWriteCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, err := certs.ServerTLS(true)
	if err != nil {
		t.Fatal(err)
	}
	secure, err := embedded.Start(embedded.Options{Extra: []kfake.Opt{kfake.TLS(srvTLS), kfake.EnableSASL(),
		kfake.Superuser(config.SASLScramSHA256, "admin", "admin-secret"), kfake.User(config.SASLPlain, "plain", "plain-secret")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(secure.Close)
	sasl, err := embedded.Start(embedded.Options{Extra: []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(config.SASLScramSHA512, "admin", "admin-secret")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sasl.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	good := config.Kafka{Brokers: secure.ListenAddrs(), TLSCAFile: certs.CAFile, TLSCertFile: certs.ClientCertFile, TLSKeyFile: certs.ClientKeyFile,
		SASLMechanism: config.SASLScramSHA256, SASLUser: "admin", SASLPassword: "admin-secret"}
	tests := []struct {
		name  string
		edit  func(k *config.Kafka)
		stage string
		want  []string
	}{
		{"right", func(*config.Kafka) {}, "", nil},
		{"no broker", func(k *config.Kafka) { k.Brokers = []string{closed} }, config.StageConnect, []string{closed}},
		{"wrong password", func(k *config.Kafka) { k.SASLPassword = "hunter2" }, config.StageSASL, []string{"SCRAM-SHA-256", `"admin"`}},
		{"wrong mechanism", func(k *config.Kafka) { k.SASLMechanism = config.SASLScramSHA512 }, config.StageSASL, []string{"SCRAM-SHA-512", `"admin"`}},
		{"plain user, wrong password", func(k *config.Kafka) {
			k.SASLMechanism, k.SASLUser, k.SASLPassword = config.SASLPlain, "plain", "hunter2"
		}, config.StageSASL, []string{"PLAIN", `"plain"`}},
		{"plaintext to TLS", func(k *config.Kafka) {
			k.TLSCAFile, k.TLSCertFile, k.TLSKeyFile = "", "", ""
		}, config.StageTLS, []string{"--tls"}},
		{"no client certificate", func(k *config.Kafka) { k.TLSCertFile, k.TLSKeyFile = "", "" }, config.StageTLS, []string{"client certificate"}},
		{"unknown CA", func(k *config.Kafka) { k.TLSCAFile = "" }, config.StageTLS, []string{"--tls-ca"}},
		{"no SASL against SASL", func(k *config.Kafka) {
			*k = config.Kafka{Brokers: sasl.ListenAddrs()}
		}, config.StageRequest, []string{"--sasl-mechanism"}},
		{"TLS to plaintext", func(k *config.Kafka) {
			k.Brokers, k.SASLMechanism, k.SASLUser, k.SASLPassword = sasl.ListenAddrs(), config.SASLScramSHA512, "admin", "admin-secret"
		}, config.StageTLS, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := good
			tt.edit(&k)
			err := k.Check(context.Background(), 20*time.Second)
			if tt.stage == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *config.ConnError
			if !errors.As(err, &ce) || ce.Stage != tt.stage {
				t.Fatalf("Check: %v, want a ConnError at stage %s", err, tt.stage)
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q lacks %q", msg, w)
				}
			}
			for _, secret := range []string{"hunter2", "admin-secret", "plain-secret"} {
				if strings.Contains(msg, secret) {
					t.Errorf("%q shows the password", msg)
				}
			}
		})
	}
}
