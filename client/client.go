package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/wire"
)

// Config configures a Client. Zero fields get the documented defaults.
type Config struct {
	// Brokers are the seed brokers. Required.
	Brokers []string
	// CommandTopic is where commands go. Default "commands".
	CommandTopic string
	// ReplyTopic is where this client reads replies. Default "command_reply".
	ReplyTopic string
	// ClientOpts are extra franz-go options (TLS, SASL, ...).
	ClientOpts []kgo.Opt
}

// Command is one command to send.
type Command struct {
	AggregateType string
	AggregateID   string
	// Type is the command type (its Avro record name).
	Type string
	// ID identifies the command for deduplication; reuse it when retrying.
	// Default: a random id.
	ID string
	// ExpectedVersion is "" (any), a version number, wire.ExpectNoStream or
	// wire.ExpectExists.
	ExpectedVersion string
	// Deadline, when set, is the time after which the command must not take
	// effect (it is answered EXPIRED instead).
	Deadline time.Time
	// Exactly one of JSON (the record in Avro's JSON encoding) or Avro (the
	// record in Avro single-object encoding) is the payload.
	JSON []byte
	Avro []byte
}

// Client sends commands and matches replies by correlation id. It is safe
// for concurrent use.
type Client struct {
	cfg     Config
	produce *kgo.Client
	consume *kgo.Client
	reply   *schemas.Codec
	mu      sync.Mutex
	waiters map[string]*waiter // async.go
	done    chan struct{}
	// Correlation ids are this client's random prefix and a counter:
	// unique among the clients sharing a reply topic without a
	// crypto/rand read per command (measured: NewID was most of record's
	// cost in kcqrs-bench's latency phase).
	corrPrefix string
	corrSeq    atomic.Uint64
}

// Trace is when one command passed the client's stages, for a latency
// breakdown (kcqrs-bench joins it with the processor's stages by the
// command record's partition and offset).
type Trace struct {
	// Partition and Offset of the command record.
	Partition int32
	Offset    int64
	// Sent: the command record's produce was acknowledged (when the reply
	// was polled before the acknowledgement's callback ran, the poll's
	// time: Sent <= Polled <= Received always holds).
	Sent time.Time
	// Polled: the reply consumer's poll returned the reply (it was
	// fetched from the reply topic and decoded by franz-go).
	Polled time.Time
	// Received: Send's caller has the reply.
	Received time.Time
}

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("client: closed")

// New connects to the brokers and starts reading the reply topic from its
// current end, so that no reply to a command sent after New returns is missed.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("client: no brokers")
	}
	if cfg.CommandTopic == "" {
		cfg.CommandTopic = "commands"
	}
	if cfg.ReplyTopic == "" {
		cfg.ReplyTopic = "command_reply"
	}
	env, err := schemas.LoadEnvelopes()
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	codec, err := env.Codec("kcqrs.Reply")
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	base := append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...)
	// No linger: a command goes out at once (franz-go lingers 10 ms by
	// default, which ProduceSync skips but SendAsync would wait out; records
	// still batch while a request is in flight). ClientOpts may set one.
	prod, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ProducerLinger(0)}, cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	ends, err := kadm.NewClient(prod).ListEndOffsets(ctx, cfg.ReplyTopic)
	if err == nil {
		err = ends.Error()
	}
	if err == nil && len(ends[cfg.ReplyTopic]) == 0 {
		err = fmt.Errorf("reply topic %q does not exist (the processor creates it at start)", cfg.ReplyTopic)
	}
	if err != nil {
		prod.Close()
		return nil, fmt.Errorf("client: reply topic %q end offsets: %w", cfg.ReplyTopic, err)
	}
	start := map[int32]kgo.Offset{}
	for p, o := range ends[cfg.ReplyTopic] {
		start[p] = kgo.NewOffset().At(o.Offset)
	}
	cons, err := kgo.NewClient(append(base,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.ReplyTopic: start}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)...)
	if err != nil {
		prod.Close()
		return nil, fmt.Errorf("client: %w", err)
	}
	c := &Client{cfg: cfg, produce: prod, consume: cons, reply: codec, waiters: map[string]*waiter{}, done: make(chan struct{}), corrPrefix: NewID() + "-"}
	go c.readReplies()
	return c, nil
}

func (c *Client) readReplies() {
	defer close(c.done)
	for {
		fetches := c.consume.PollFetches(context.Background())
		if fetches.IsClientClosed() {
			return
		}
		polled := time.Now()
		fetches.EachRecord(func(r *kgo.Record) {
			var corr, ct string
			for _, h := range r.Headers {
				switch h.Key {
				case wire.HeaderCorrelationID:
					corr = string(h.Value)
				case wire.HeaderContentType:
					ct = string(h.Value)
				}
			}
			c.mu.Lock()
			w := c.waiters[corr]
			delete(c.waiters, corr)
			c.mu.Unlock()
			if w == nil {
				return // someone else's reply, or one we stopped waiting for
			}
			var rep wire.Reply
			var err error
			if ct == wire.ContentTypeJSON {
				err = c.reply.DecodeJSON(r.Value, &rep)
			} else {
				err = c.reply.Decode(r.Value, &rep)
			}
			if err != nil {
				err = fmt.Errorf("client: decode reply: %w", err)
			}
			w.finish(rep, polled, err)
		})
	}
}

// NewID returns a random command or correlation id.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Send produces cmd and waits for its reply until ctx ends. A reply with a
// non-ACCEPTED status is not an error: inspect Reply.Status.
func (c *Client) Send(ctx context.Context, cmd Command) (wire.Reply, error) {
	rep, _, err := c.SendTrace(ctx, cmd)
	return rep, err
}

// SendTrace is Send that also says when the command passed each of the
// client's stages (the fields it did not reach are zero).
func (c *Client) SendTrace(ctx context.Context, cmd Command) (wire.Reply, Trace, error) {
	type result struct {
		rep wire.Reply
		tr  Trace
		err error
	}
	ch := make(chan result, 1)
	c.SendAsync(ctx, cmd, func(rep wire.Reply, tr Trace, err error) { ch <- result{rep, tr, err} })
	r := <-ch
	return r.rep, r.tr, r.err
}

// record builds the Kafka record for cmd and returns its correlation id.
func (c *Client) record(cmd Command) (*kgo.Record, string, error) {
	if cmd.AggregateType == "" || cmd.AggregateID == "" || cmd.Type == "" {
		return nil, "", errors.New("client: a command needs AggregateType, AggregateID and Type")
	}
	if (cmd.JSON == nil) == (cmd.Avro == nil) {
		return nil, "", errors.New("client: a command needs exactly one of JSON or Avro")
	}
	if cmd.ID == "" {
		cmd.ID = NewID()
	}
	corr := c.corrPrefix + strconv.FormatUint(c.corrSeq.Add(1), 36)
	value, ct := cmd.Avro, wire.ContentTypeAvro
	if cmd.JSON != nil {
		value, ct = cmd.JSON, wire.ContentTypeJSON
	}
	headers := []kgo.RecordHeader{
		{Key: wire.HeaderCommandID, Value: []byte(cmd.ID)},
		{Key: wire.HeaderCommandType, Value: []byte(cmd.Type)},
		{Key: wire.HeaderAggregateType, Value: []byte(cmd.AggregateType)},
		{Key: wire.HeaderContentType, Value: []byte(ct)},
		{Key: wire.HeaderCorrelationID, Value: []byte(corr)},
		{Key: wire.HeaderReplyTopic, Value: []byte(c.cfg.ReplyTopic)},
	}
	if cmd.ExpectedVersion != "" {
		headers = append(headers, kgo.RecordHeader{Key: wire.HeaderExpectedVersion, Value: []byte(cmd.ExpectedVersion)})
	}
	if !cmd.Deadline.IsZero() {
		headers = append(headers, kgo.RecordHeader{Key: wire.HeaderDeadline, Value: []byte(cmd.Deadline.UTC().Format(time.RFC3339Nano))})
	}
	return &kgo.Record{Topic: c.cfg.CommandTopic, Key: []byte(cmd.AggregateID), Value: value, Headers: headers}, corr, nil
}

// Close stops reading replies and closes the connections. Pending Sends
// return ErrClosed.
func (c *Client) Close() {
	c.mu.Lock()
	pending := c.waiters
	c.waiters = nil
	c.mu.Unlock()
	for _, w := range pending {
		w.finish(wire.Reply{}, time.Time{}, ErrClosed)
	}
	c.produce.Close()
	c.consume.Close()
	<-c.done
}
