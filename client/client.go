package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
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
	// ClientOpts are extra franz-go options (TLS, SASL, ...). They come
	// after the client's own, so kgo.ProducerLinger here replaces
	// DefaultLinger.
	ClientOpts []kgo.Opt
}

// Command is one command to send.
type Command struct {
	AggregateType string
	AggregateID   string
	// Type is the command type (its Avro record name).
	Type string
	// ID identifies the command for deduplication; reuse it when retrying.
	// Default: a unique id (the client's correlation id of the command: a
	// random prefix per client and a counter).
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
	waiters map[uint64]*waiter            // by correlation counter; async.go
	groups  map[<-chan struct{}]*ctxGroup // async.go
	done    chan struct{}
	// Correlation ids are this client's random prefix and a counter in
	// base 36: unique among the clients sharing a reply topic without a
	// crypto/rand read per command (measured: NewID was most of record's
	// cost in kcqrs-bench's latency phase), and a reply is matched by
	// parsing the counter back, without a string per reply.
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

// DefaultLinger is how long the client's producer waits for more commands
// to batch with one (kgo.ProducerLinger): it adds at most that to a command's
// latency and saves a produce request per few commands under load
// (measured in BENCHMARKS.md, "The client's path per command").
const DefaultLinger = time.Millisecond

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
	// A linger of DefaultLinger, not franz-go's 10 ms (which SendAsync
	// would wait out at low load) and not none (an open-loop sender then
	// makes a produce request of a few records each, and the client's and
	// the broker's work per request is most of the client's cost per
	// command). ClientOpts may set another.
	prod, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ProducerLinger(DefaultLinger)}, cfg.ClientOpts...)...)
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
	c := &Client{cfg: cfg, produce: prod, consume: cons, reply: codec, waiters: map[uint64]*waiter{}, groups: map[<-chan struct{}]*ctxGroup{}, done: make(chan struct{}), corrPrefix: NewID() + "-"}
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
		fetches.EachRecord(func(r *kgo.Record) { c.deliver(r, polled) })
	}
}

// deliver hands a reply record to the command waiting for it, if any.
func (c *Client) deliver(r *kgo.Record, polled time.Time) {
	var (
		seq  uint64
		ours bool
		json bool
	)
	for _, h := range r.Headers {
		switch h.Key {
		case wire.HeaderCorrelationID:
			seq, ours = c.parseCorr(h.Value)
		case wire.HeaderContentType:
			json = string(h.Value) == wire.ContentTypeJSON
		}
	}
	if !ours {
		return // another client's reply
	}
	c.mu.Lock()
	w := c.waiters[seq]
	if w != nil {
		delete(c.waiters, seq)
		c.leave(w)
	}
	c.mu.Unlock()
	if w == nil {
		return // one we stopped waiting for
	}
	var rep wire.Reply
	var err error
	if json {
		err = c.reply.DecodeJSON(r.Value, &rep)
	} else {
		err = c.reply.Decode(r.Value, &rep)
	}
	if err != nil {
		err = fmt.Errorf("client: decode reply: %w", err)
	}
	w.finish(rep, polled, err)
}

// parseCorr returns the counter of a correlation id of this client (its
// prefix and the counter in base 36).
func (c *Client) parseCorr(v []byte) (uint64, bool) {
	p := c.corrPrefix
	if len(v) <= len(p) || string(v[:len(p)]) != p {
		return 0, false
	}
	var n uint64
	for _, b := range v[len(p):] {
		var d byte
		switch {
		case '0' <= b && b <= '9':
			d = b - '0'
		case 'a' <= b && b <= 'z':
			d = b - 'a' + 10
		default:
			return 0, false
		}
		if n > (math.MaxUint64-uint64(d))/36 {
			return 0, false
		}
		n = n*36 + uint64(d)
	}
	return n, true
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
	w := &waiter{}
	if err := c.fill(w, cmd); err != nil {
		return nil, "", err
	}
	for _, h := range w.rec.Headers {
		if h.Key == wire.HeaderCorrelationID {
			return &w.rec, string(h.Value), nil
		}
	}
	return &w.rec, "", nil
}

// fill builds w's record for cmd and gives w its correlation counter. The
// record's key and header values are one allocation.
func (c *Client) fill(w *waiter, cmd Command) error {
	if cmd.AggregateType == "" || cmd.AggregateID == "" || cmd.Type == "" {
		return errors.New("client: a command needs AggregateType, AggregateID and Type")
	}
	if (cmd.JSON == nil) == (cmd.Avro == nil) {
		return errors.New("client: a command needs exactly one of JSON or Avro")
	}
	w.seq = c.corrSeq.Add(1)
	value, ct := cmd.Avro, wire.ContentTypeAvro
	if cmd.JSON != nil {
		value, ct = cmd.JSON, wire.ContentTypeJSON
	}
	const maxSeq = 13 // base-36 digits of a uint64
	n := len(cmd.AggregateID) + 2*len(c.corrPrefix) + 2*maxSeq + len(cmd.ID) + len(cmd.Type) + len(cmd.AggregateType) +
		len(ct) + len(c.cfg.ReplyTopic) + len(cmd.ExpectedVersion) + len(time.RFC3339Nano) + 8
	buf := make([]byte, 0, n)
	var ends [10]int // where each piece of buf ends
	piece := 0
	add := func(s string) {
		buf = append(buf, s...)
		ends[piece] = len(buf)
		piece++
	}
	add(cmd.AggregateID)
	buf = append(buf, c.corrPrefix...)
	buf = strconv.AppendUint(buf, w.seq, 36)
	ends[piece] = len(buf)
	piece++
	if cmd.ID == "" {
		// The correlation id, unique as well.
		buf = append(buf, buf[ends[0]:ends[1]]...)
		ends[piece] = len(buf)
		piece++
	} else {
		add(cmd.ID)
	}
	add(cmd.Type)
	add(cmd.AggregateType)
	add(ct)
	add(c.cfg.ReplyTopic)
	if cmd.ExpectedVersion != "" {
		add(cmd.ExpectedVersion)
	}
	if !cmd.Deadline.IsZero() {
		buf = cmd.Deadline.UTC().AppendFormat(buf, time.RFC3339Nano)
		ends[piece] = len(buf)
		piece++
	}
	at := func(i int) []byte { return buf[ends[i-1]:ends[i]:ends[i]] }
	w.cmdID, w.cmdType = cmd.ID, cmd.Type
	if w.cmdID == "" {
		w.cmdID = string(at(2))
	}
	h := append(w.hdrs[:0],
		kgo.RecordHeader{Key: wire.HeaderCommandID, Value: at(2)},
		kgo.RecordHeader{Key: wire.HeaderCommandType, Value: at(3)},
		kgo.RecordHeader{Key: wire.HeaderAggregateType, Value: at(4)},
		kgo.RecordHeader{Key: wire.HeaderContentType, Value: at(5)},
		kgo.RecordHeader{Key: wire.HeaderCorrelationID, Value: at(1)},
		kgo.RecordHeader{Key: wire.HeaderReplyTopic, Value: at(6)},
	)
	next := 7
	if cmd.ExpectedVersion != "" {
		h = append(h, kgo.RecordHeader{Key: wire.HeaderExpectedVersion, Value: at(next)})
		next++
	}
	if !cmd.Deadline.IsZero() {
		h = append(h, kgo.RecordHeader{Key: wire.HeaderDeadline, Value: at(next)})
	}
	w.rec = kgo.Record{Topic: c.cfg.CommandTopic, Key: buf[:ends[0]:ends[0]], Value: value, Headers: h}
	return nil
}

// Close stops reading replies and closes the connections. Pending Sends
// return ErrClosed.
func (c *Client) Close() {
	c.mu.Lock()
	pending := c.waiters
	c.waiters = nil
	for _, g := range c.groups {
		g.stop()
		g.head, g.n = nil, 0
	}
	c.groups = nil
	for _, w := range pending {
		w.group, w.prev, w.next = nil, nil, nil
	}
	c.mu.Unlock()
	for _, w := range pending {
		w.finish(wire.Reply{}, time.Time{}, ErrClosed)
	}
	c.produce.Close()
	c.consume.Close()
	<-c.done
}
