package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/internal/binarytest"
	"github.com/kcqrs/kcqrs/internal/examples"
)

// TestWrongPasswordIsNamed: a worker with a wrong SASL password (or a
// mechanism the user does not have) stops with an authentication error
// naming the mechanism and the user, never the password, instead of
// `check permissions: EOF` half a minute later.
func TestWrongPasswordIsNamed(t *testing.T) {
	t.Parallel()
	c := binarytest.Embedded(t, embedded.Options{Extra: []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(config.SASLScramSHA256, "worker", "right-secret")}})
	for _, tt := range []struct{ mechanism, password string }{
		{config.SASLScramSHA256, "hunter2"},
		{config.SASLScramSHA512, "right-secret"},
		{config.SASLPlain, "hunter2"},
	} {
		t.Run(tt.mechanism, func(t *testing.T) {
			t.Parallel()
			st, _, err := load([]string{"--brokers", strings.Join(c.ListenAddrs(), ","), "--state-dir", t.TempDir(), "--instance-id", "w0",
				"--http-addr", "127.0.0.1:0"}, env("KCQRS_SASL_MECHANISM", tt.mechanism, "KCQRS_SASL_USER", "worker", "KCQRS_SASL_PASSWORD", tt.password, "KCQRS_TRANSFER_SIGNING_KEY", "legs-secret"), false)
			if err != nil {
				t.Fatal(err)
			}
			reg, err := examples.Registry()
			if err != nil {
				t.Fatal(err)
			}
			// Generous: the bar is "not a bare EOF", checked by the text.
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			err = run(ctx, st, reg, io.Discard, nil)
			var ce *config.ConnError
			if !errors.As(err, &ce) || ce.Stage != config.StageSASL {
				t.Fatalf("run: %v, want a SASL ConnError", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "SASL "+tt.mechanism) || !strings.Contains(msg, `user "worker"`) || strings.Contains(msg, tt.password) {
				t.Fatalf("run: %s", msg)
			}
		})
	}
}
