package main

import (
	"context"
	"errors"
	"strings"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kcqrs/kcqrs/config"
)

// saramaAdjuster returns what sets the Kafka connection's TLS and SASL on
// the sarama configs goka uses, the same settings franz-go gets from
// config.Kafka.Opts. Nil when there is nothing to set.
func saramaAdjuster(k *config.Kafka) (func(*sarama.Config), error) {
	tlsWanted := k.TLS || k.TLSCAFile != "" || k.TLSCertFile != "" || k.TLSKeyFile != "" || k.TLSServerName != "" || k.TLSInsecureSkipVerify
	mech := strings.ToUpper(k.SASLMechanism)
	if !tlsWanted && mech == "" {
		return nil, nil
	}
	tlsConf, err := k.TLSConfig()
	if err != nil {
		return nil, err
	}
	user, pass := k.SASLUser, k.SASLPassword
	return func(c *sarama.Config) {
		if tlsWanted {
			c.Net.TLS.Enable = true
			// As franz-go does, sarama sets an empty ServerName to the
			// broker's host on each dial (validServerNameTLS).
			c.Net.TLS.Config = tlsConf.Clone()
		}
		if mech == "" {
			return
		}
		c.Net.SASL.Enable = true
		c.Net.SASL.Handshake = true
		c.Net.SASL.User, c.Net.SASL.Password = user, pass
		switch mech {
		case config.SASLPlain:
			c.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		case config.SASLScramSHA256:
			c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
			c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient {
				return &scramClient{mech: scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()}
			}
		case config.SASLScramSHA512:
			c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
			c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient {
				return &scramClient{mech: scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()}
			}
		}
	}, nil
}

// scramClient runs franz-go's SCRAM implementation behind sarama's
// SCRAMClient interface, so that sarama needs no other SCRAM library.
// sarama calls Step("") for the client-first message, then Step with each
// server message until Done.
type scramClient struct {
	mech    sasl.Mechanism
	session sasl.Session
	first   []byte
	started bool
	done    bool
}

func (s *scramClient) Begin(user, pass, authzID string) error {
	if authzID != "" {
		return errors.New("projector: SCRAM authorization ids are not supported")
	}
	sess, first, err := s.mech.Authenticate(context.Background(), "")
	if err != nil {
		return err
	}
	s.session, s.first = sess, first
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) {
	if !s.started {
		s.started = true
		return string(s.first), nil
	}
	done, msg, err := s.session.Challenge([]byte(challenge))
	if err != nil {
		return "", err
	}
	s.done = done
	return string(msg), nil
}

func (s *scramClient) Done() bool { return s.done }
