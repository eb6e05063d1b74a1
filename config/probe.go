package config

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Stages of a connection, as ConnError names them.
const (
	StageConnect = "connect" // TCP: no broker, wrong port, firewall
	StageTLS     = "tls"     // TLS handshake, certificates, plaintext against TLS
	StageSASL    = "sasl"    // authentication
	StageRequest = "request" // a first request after logging in
)

// ConnError says why a binary cannot talk to Kafka: which broker, at which
// stage, with which SASL mechanism and user (never the password), the
// underlying error, and a hint at the usual cause.
type ConnError struct {
	Broker    string
	Stage     string
	Mechanism string // "" without SASL
	User      string
	Hint      string
	Err       error
}

func (e *ConnError) Error() string {
	var b strings.Builder
	switch e.Stage {
	case StageConnect:
		fmt.Fprintf(&b, "cannot connect to Kafka broker %s", e.Broker)
	case StageTLS:
		fmt.Fprintf(&b, "TLS with Kafka broker %s failed", e.Broker)
	case StageSASL:
		fmt.Fprintf(&b, "SASL %s authentication of user %q at Kafka broker %s failed", e.Mechanism, e.User, e.Broker)
	default:
		fmt.Fprintf(&b, "Kafka broker %s refused a first request", e.Broker)
		if e.Mechanism != "" {
			fmt.Fprintf(&b, " (SASL %s, user %q)", e.Mechanism, e.User)
		}
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if e.Hint != "" {
		b.WriteString(" (" + e.Hint + ")")
	}
	return b.String()
}

func (e *ConnError) Unwrap() error { return e.Err }

// Retriable says whether waiting may help: a broker not up yet, or a
// network problem. A refused certificate or password will not heal by
// itself (but an operator may fix it, so long-lived services retry anyway).
func (e *ConnError) Retriable() bool { return e.Stage == StageConnect }

// Check connects to the seed brokers step by step (TCP, TLS, a first
// request, SASL, a metadata request) within timeout and returns nil as
// soon as one seed broker passes every step, else a *ConnError for the
// first seed broker. franz-go itself retries a failed connection quietly
// and reports a wrong password as EOF after its request retries (about 30
// s); Check answers within seconds and names the cause.
func (k *Kafka) Check(ctx context.Context, timeout time.Duration) error {
	if err := k.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var first error
	for _, b := range k.Brokers {
		err := k.checkBroker(ctx, b)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

func (k *Kafka) checkBroker(ctx context.Context, broker string) error {
	mech := strings.ToUpper(k.SASLMechanism)
	cerr := func(stage, hint string, err error) error {
		return &ConnError{Broker: broker, Stage: stage, Mechanism: mech, User: k.SASLUser, Hint: hint, Err: err}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", broker)
	if err != nil {
		return cerr(StageConnect, "is the broker running, and is --brokers right?", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if k.tlsWanted() {
		tc, err := k.TLSConfig()
		if err != nil {
			return err
		}
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(broker)
		}
		tconn := tls.Client(conn, tc)
		// A plaintext listener waits for the rest of what it takes for a
		// huge request: give the handshake a few seconds, not the whole
		// timeout.
		hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
		err = tconn.HandshakeContext(hctx)
		hcancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return cerr(StageTLS, "no TLS handshake within 5s: is the listener plaintext? then drop --tls", err)
		}
		if err != nil {
			return cerr(StageTLS, tlsHint(err), err)
		}
		conn = tconn
	}
	// An ApiVersions request needs no authentication: it shows whether we
	// speak the listener's protocol (a TLS listener drops plaintext, and
	// under TLS 1.3 a refused client certificate shows only now).
	if err := apiVersions(conn); err != nil {
		if k.tlsWanted() {
			return cerr(StageTLS, tlsHint(err), err)
		}
		return cerr(StageTLS, "the broker closed a plaintext connection: if its listener uses TLS, set --tls (and --tls-ca)", err)
	}
	conn.Close()

	// Now the real client, with SASL, and no retries: the first failure is
	// the answer.
	opts, err := k.Opts()
	if err != nil {
		return err
	}
	opts = append(opts, kgo.SeedBrokers(broker), kgo.RequestRetries(0), kgo.RetryTimeout(time.Second))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{} // none: brokers only
	_, err = req.RequestWith(ctx, cl)
	if err == nil {
		return nil
	}
	if mech != "" {
		return cerr(StageSASL, "wrong user or password, or the mechanism is not enabled for this user on the broker", err)
	}
	return cerr(StageRequest, "the broker may require SASL: set --sasl-mechanism, --sasl-user and the password", err)
}

// apiVersions sends an ApiVersions v0 request on conn and reads the
// response's size.
func apiVersions(conn net.Conn) error {
	body := kmsg.NewPtrApiVersionsRequest().AppendTo(nil) // v0: empty
	clientID := "kcqrs-check"
	msg := binary.BigEndian.AppendUint16(nil, 18) // ApiVersions
	msg = binary.BigEndian.AppendUint16(msg, 0)   // v0
	msg = binary.BigEndian.AppendUint32(msg, 1)   // correlation id
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(clientID)))
	msg = append(msg, clientID...)
	msg = append(msg, body...)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
	if _, err := conn.Write(append(frame, msg...)); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > 1<<20 {
		return fmt.Errorf("not a Kafka response (size %d): is this a Kafka listener, and does it expect TLS?", n)
	}
	_, err := io.CopyN(io.Discard, conn, int64(n))
	return err
}

func tlsHint(err error) string {
	s := err.Error()
	var ua x509.UnknownAuthorityError
	switch {
	case strings.Contains(s, "certificate required") || strings.Contains(s, "bad certificate"):
		return "the broker wants a client certificate it trusts: --tls-cert and --tls-key"
	case errors.As(err, &ua) || strings.Contains(s, "unknown authority"):
		return "the broker's certificate is not signed by a CA in --tls-ca (or the system's)"
	case strings.Contains(s, "first record does not look like a TLS handshake"):
		return "the listener does not speak TLS: drop --tls"
	case errors.Is(err, io.EOF) || strings.Contains(s, "connection reset"):
		return "the broker closed the connection during TLS: a client certificate missing or refused?"
	}
	return ""
}
