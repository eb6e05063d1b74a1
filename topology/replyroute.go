package topology

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/wire"
)

// Reply routing. The reply address of a command (kafka_replyTopic,
// kafka_replyPartition) comes from a client, so it is input, never an
// instruction: a worker that produced wherever a header said could be made to
// write into its own changelog (a forged "snapshot" that every restore then
// reads), its events, its commands, the dead letters, the saga's reply topic
// or Kafka's own __ topics. Kafka Streams never lets a record choose an
// output topic; here the reply topics are an allow-list (Config.ReplyTopics,
// modelled on Kafka's LITERAL and PREFIXED ACL patterns), and the topology's
// own topics, Config.InternalTopics and "__*" are refused even when an
// allow-list entry would match them.

// ReplyDropObserver is an optional extension of Observer: a processor whose
// Observer implements it tells it about every reply it could not deliver
// because its (allowed) reply topic does not exist or may not be written.
// Called when decided, inside the open transaction.
type ReplyDropObserver interface {
	ReplyDropped(partition int32, topic, reason string)
}

// IsolationObserver is an optional extension of Observer: told about every
// command answered without effect because an output could not be written
// (too large) or its reply address was refused. Called when decided.
type IsolationObserver interface {
	CommandIsolated(partition int32, code string)
}

// topicPattern is an allow-list or internal-topic entry: an exact name, or a
// prefix when it ends in "*".
type topicPattern struct {
	name   string
	prefix bool
}

func parseTopicPattern(s string) topicPattern {
	if strings.HasSuffix(s, "*") {
		return topicPattern{name: strings.TrimSuffix(s, "*"), prefix: true}
	}
	return topicPattern{name: s}
}

func (p topicPattern) String() string {
	if p.prefix {
		return p.name + "*"
	}
	return p.name
}

func (p topicPattern) matches(topic string) bool {
	if p.prefix {
		return strings.HasPrefix(topic, p.name)
	}
	return topic == p.name
}

// overlaps reports whether some topic name could match both patterns.
func (p topicPattern) overlaps(q topicPattern) bool {
	switch {
	case p.prefix && q.prefix:
		return strings.HasPrefix(p.name, q.name) || strings.HasPrefix(q.name, p.name)
	case p.prefix:
		return strings.HasPrefix(q.name, p.name)
	case q.prefix:
		return strings.HasPrefix(p.name, q.name)
	}
	return p.name == q.name
}

// validTopicName reports why s is not a legal Kafka topic name (or prefix of
// one), or "" when it is.
func validTopicName(s string, prefix bool) string {
	if s == "" && !prefix {
		return "empty"
	}
	if len(s) > 249 {
		return "longer than 249 characters"
	}
	if !prefix && (s == "." || s == "..") {
		return "not a topic name"
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Sprintf("contains %q (Kafka allows [a-zA-Z0-9._-])", c)
		}
	}
	return ""
}

// protectedTopics are the patterns no reply may ever go to.
func (c *Config) protectedTopics() []topicPattern {
	out := []topicPattern{
		{name: c.Topics.Commands}, {name: c.Topics.Events}, {name: c.Topics.Changelog}, {name: c.Topics.DeadLetters},
		{name: "__", prefix: true},
	}
	if st := c.schemaTopic(); st != "" {
		out = append(out, topicPattern{name: st}) // schematopic.go
	}
	// The keys topic of personal data (personal.go), whether or not this
	// worker has a master key: a record forged there would be read as a
	// data key by every worker that has one.
	out = append(out, topicPattern{name: DefaultKeysTopic})
	if c.Topics.Keys != "" && c.Topics.Keys != DefaultKeysTopic {
		out = append(out, topicPattern{name: c.Topics.Keys})
	}
	for _, s := range c.InternalTopics {
		out = append(out, parseTopicPattern(s))
	}
	return out
}

// validateReplyTopics reports allow-list entries that are malformed or
// could match a protected topic.
func (c *Config) validateReplyTopics() []error {
	var errs []error
	protected := c.protectedTopics()
	for _, s := range c.InternalTopics {
		p := parseTopicPattern(s)
		if why := validTopicName(p.name, p.prefix); why != "" {
			errs = append(errs, fmt.Errorf("internal topic %q: %s", s, why))
		}
		if p.matches(c.Topics.Replies) {
			errs = append(errs, fmt.Errorf("internal topic %q matches the default reply topic %q", s, c.Topics.Replies))
		}
	}
	if strings.HasPrefix(c.Topics.Replies, "__") {
		errs = append(errs, fmt.Errorf("reply topic %q: topics starting with __ are Kafka's own", c.Topics.Replies))
	}
	for _, s := range c.ReplyTopics {
		p := parseTopicPattern(s)
		if p.prefix && p.name == "" {
			errs = append(errs, fmt.Errorf("reply topic %q would allow every topic, the topology's own included", s))
			continue
		}
		if why := validTopicName(p.name, p.prefix); why != "" {
			errs = append(errs, fmt.Errorf("reply topic %q: %s", s, why))
			continue
		}
		for _, q := range protected {
			if p.overlaps(q) {
				errs = append(errs, fmt.Errorf("reply topic %q would allow %q, a topic no command may write to (the topology's own, an internal one or Kafka's)", s, q.String()))
			}
		}
	}
	return errs
}

// replyTopicRefusal says why a command may not have its reply written to
// topic, or "" when it may.
func (c *Config) replyTopicRefusal(topic string) string {
	if topic == c.Topics.Replies {
		return ""
	}
	if why := validTopicName(topic, false); why != "" {
		return "not a topic name: " + why
	}
	for _, q := range c.protectedTopics() {
		if q.matches(topic) {
			return "a topic of the topology or of Kafka, never a reply topic"
		}
	}
	for _, s := range c.ReplyTopics {
		if parseTopicPattern(s).matches(topic) {
			return ""
		}
	}
	return "not an allowed reply topic (see Config.ReplyTopics, --reply-topics)"
}

// checkReplyAddress validates the reply address a command names. A refused
// address is replaced by the default reply topic (hashed partition), so the
// INVALID answer still reaches a client that reads it, and the returned
// error says why.
func (p *Processor) checkReplyAddress(r *kgo.Record, meta *commandMeta) error {
	p.outputLimit() // applies the config's bounds to the cache, once
	ra := &meta.reply
	why := p.cfg.replyTopicRefusal(ra.topic)
	if why == "" && ra.partitionSet {
		n, err := p.topics.partitionsFor(ra.topic, ra.partition)
		switch {
		case err != nil:
			// Unknown or unusable topics are decided when replying.
		case ra.partition < 0 || ra.partition >= n:
			why = fmt.Sprintf("partition %d out of range (the topic has %d)", ra.partition, n)
		}
	}
	if why == "" {
		return nil
	}
	bad := *ra
	ra.topic, ra.partition, ra.partitionSet = p.cfg.Topics.Replies, -1, false
	p.mu.Lock()
	p.stats.BadReplyAddresses++
	p.mu.Unlock()
	if o, ok := p.cfg.Observer.(IsolationObserver); ok {
		o.CommandIsolated(r.Partition, CodeBadReplyAddress)
	}
	where := fmt.Sprintf("%q", capMessage(bad.topic))
	if bad.partitionSet {
		where += fmt.Sprintf(" partition %d", bad.partition)
	}
	return invalid(CodeBadReplyAddress, "reply address %s refused: %s; answered on %q instead", where, why, p.cfg.Topics.Replies)
}

// Errors of reply topic lookups.
var (
	// errNoTopic: the topic does not exist (definitive: the reply is dropped).
	errNoTopic = errors.New("topic does not exist")
	// ErrTransientMetadata wraps a lookup that failed for a reason that
	// may pass (leader not available, timeout): the batch is retried once
	// the lookup, retried in the background with backoff, has an answer.
	ErrTransientMetadata = errors.New("topology: reply topic metadata temporarily unavailable")
)

// Bounds of reply topic lookups.
const (
	// negativeTTL is how long a definitive "no such topic" is believed.
	negativeTTL = 5 * time.Second
	// transientGiveUp is how long a topic may answer only transient errors
	// before its replies are dropped as if it did not exist (a batch would
	// otherwise be retried for as long as the topic is sick).
	transientGiveUp = 30 * time.Second
	// refreshAfter is how old a partition count may be before a reply to a
	// partition beyond it triggers a fresh lookup (topics can grow).
	refreshAfter = time.Second
)

// topicCache knows the partition counts of the topics replies and dead
// letters go to, in a bounded LRU (Config.ReplyTopicCacheSize): a client
// naming many reply topics cannot grow the worker's memory. A first lookup
// waits at most Config.ReplyLookupTimeout; a lookup that failed transiently
// is retried in the background with backoff, outside any transaction, and
// the batch that needed it is retried when the loop retries it.
type topicCache struct {
	cl      *kgo.Client
	max     int
	timeout time.Duration

	mu      sync.Mutex
	entries map[string]*list.Element // of *topicEntry
	lru     list.List                // front: most recently used

	limitOnce sync.Once
	limit     int // output record size limit (output.go)
}

type topicEntry struct {
	topic     string
	n         int32     // partitions, when known
	err       error     // last error (definitive when n == 0 and !transient)
	transient bool      // err is transient; a background retry is running
	since     time.Time // first transient failure of the current streak
	checked   time.Time // time of the last answer
}

func newTopicCache(cl *kgo.Client) *topicCache {
	return &topicCache{cl: cl, max: 1000, timeout: 500 * time.Millisecond, entries: map[string]*list.Element{}}
}

// configure applies the config's bounds (once, from the run loop's first use).
func (c *topicCache) configure(cfg *Config) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cfg.ReplyTopicCacheSize > 0 {
		c.max = cfg.ReplyTopicCacheSize
	}
	if cfg.ReplyLookupTimeout > 0 {
		c.timeout = cfg.ReplyLookupTimeout
	}
}

// partitions returns the partition count of topic.
func (c *topicCache) partitions(topic string) (int32, error) {
	return c.partitionsFor(topic, -1)
}

// partitionsFor returns the partition count of topic, looking it up again
// when want is a partition beyond a count older than refreshAfter.
func (c *topicCache) partitionsFor(topic string, want int32) (int32, error) {
	c.mu.Lock()
	e := c.get(topic)
	if e != nil && e.n > 0 && want < e.n {
		n := e.n // the usual case: no clock reading
		c.mu.Unlock()
		return n, nil
	}
	now := time.Now()
	if e != nil {
		switch {
		case e.n > 0 && (want < e.n || now.Sub(e.checked) < refreshAfter):
			n := e.n
			c.mu.Unlock()
			return n, nil
		case e.n > 0:
			// fall through to a fresh lookup; the known count stands if it fails
		case e.transient && now.Sub(e.since) < transientGiveUp:
			err := fmt.Errorf("%s: %w: %v", topic, ErrTransientMetadata, e.err)
			c.mu.Unlock()
			return 0, err
		case e.transient && now.Sub(e.checked) < negativeTTL:
			err := fmt.Errorf("%s: no usable metadata for %v: %w", topic, transientGiveUp, e.err)
			c.mu.Unlock()
			return 0, err
		case now.Sub(e.checked) < negativeTTL:
			err := fmt.Errorf("%s: %w", topic, e.err)
			c.mu.Unlock()
			return 0, err
		}
	}
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	n, err := c.lookup(ctx, topic)
	cancel()

	c.mu.Lock()
	defer c.mu.Unlock()
	e = c.get(topic)
	if e == nil {
		e = c.put(topic)
	}
	switch {
	case err == nil:
		e.n, e.err, e.transient, e.checked = n, nil, false, time.Now()
		return n, nil
	case e.n > 0:
		return e.n, nil // a known count stays usable while a refresh fails
	case isDefinitiveTopicErr(err):
		e.err, e.transient, e.checked = err, false, time.Now()
		return 0, fmt.Errorf("%s: %w", topic, err)
	}
	if !e.transient {
		e.transient, e.since = true, time.Now()
		go c.retry(topic)
	}
	e.err, e.checked = err, time.Now()
	if time.Since(e.since) >= transientGiveUp {
		return 0, fmt.Errorf("%s: no usable metadata for %v: %w", topic, transientGiveUp, err)
	}
	return 0, fmt.Errorf("%s: %w: %v", topic, ErrTransientMetadata, err)
}

// retry looks topic up with exponential backoff until it has a definitive
// answer or transientGiveUp passed.
func (c *topicCache) retry(topic string) {
	backoff := 100 * time.Millisecond
	start := time.Now()
	for {
		time.Sleep(backoff)
		backoff = min(2*backoff, 5*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout*4)
		n, err := c.lookup(ctx, topic)
		cancel()
		c.mu.Lock()
		e := c.get(topic)
		if e == nil { // evicted: nobody asks any more
			c.mu.Unlock()
			return
		}
		e.checked = time.Now()
		switch {
		case err == nil:
			e.n, e.err, e.transient = n, nil, false
		case isDefinitiveTopicErr(err):
			e.err, e.transient = err, false
		case time.Since(start) < transientGiveUp:
			e.err = err
			c.mu.Unlock()
			continue
		default:
			e.err = err // stays transient past transientGiveUp: replies are dropped
		}
		c.mu.Unlock()
		return
	}
}

func (c *topicCache) lookup(ctx context.Context, topic string) (int32, error) {
	found, err := describeTopics(ctx, c.cl, topic)
	if err != nil {
		return 0, err
	}
	if n, ok := found[topic]; ok && n > 0 {
		return n, nil
	}
	return 0, errNoTopic
}

// prefetch looks up, in one request, the topics of names not known yet or
// known for longer than refreshAfter, so that a batch of commands naming new
// reply topics costs one round trip. Known topics are checked again because
// a reply must never be produced to a topic deleted since: franz-go never
// fails a transactional record whose topic disappeared after it was sent
// (it waits for the topic to come back), so the transaction could only time
// out and the worker stop. A topic deleted between this lookup and the
// produce (a window of one batch) still does that.
func (c *topicCache) prefetch(names []string) {
	c.mu.Lock()
	var todo []string
	now := time.Now()
	for _, n := range names {
		if e := c.get(n); e == nil || e.n > 0 && now.Sub(e.checked) >= refreshAfter {
			todo = append(todo, n)
		}
	}
	c.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	found, err := describeTopics(ctx, c.cl, todo...)
	cancel()
	if err != nil {
		return // each is looked up on its own when used
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now = time.Now()
	for _, n := range todo {
		e := c.get(n)
		if e == nil {
			e = c.put(n)
		}
		if cnt, ok := found[n]; ok && cnt > 0 {
			e.n, e.err, e.transient, e.checked = cnt, nil, false, now
		} else if !e.transient {
			e.n, e.err, e.checked = 0, errNoTopic, now // never known, or deleted
		}
	}
}

// isDefinitiveTopicErr: the topic does not exist or may not be used; asking
// again will not help.
func isDefinitiveTopicErr(err error) bool {
	return errors.Is(err, errNoTopic) || errors.Is(err, kerr.UnknownTopicOrPartition) ||
		errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.InvalidTopicException) ||
		errors.Is(err, kerr.ClusterAuthorizationFailed)
}

// get returns topic's entry, marking it used. Callers hold mu.
func (c *topicCache) get(topic string) *topicEntry {
	el, ok := c.entries[topic]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*topicEntry)
}

// put adds an entry for topic, evicting the least recently used ones over
// the bound. Callers hold mu.
func (c *topicCache) put(topic string) *topicEntry {
	e := &topicEntry{topic: topic}
	c.entries[topic] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.entries, old.Value.(*topicEntry).topic)
	}
	return e
}

func (c *topicCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// prefetchReplyTopics looks up the reply topics the fetched commands name
// that are allowed and not known yet, in one request: the run loop may call
// it before Begin so that new reply topics never cost a round trip each
// inside the transaction.
func (p *Processor) prefetchReplyTopics(fetches kgo.Fetches) {
	seen := map[string]bool{}
	var names []string
	fetches.EachRecord(func(r *kgo.Record) {
		// Only the header parseCommandMeta uses (the last non-empty one):
		// a command repeating the header must not make the worker look up
		// (and cache) thousands of names.
		var t string
		for _, h := range r.Headers {
			if h.Key == wire.HeaderReplyTopic && len(h.Value) > 0 {
				t = string(h.Value)
			}
		}
		if t == "" || seen[t] {
			return
		}
		seen[t] = true
		if p.cfg.replyTopicRefusal(t) == "" {
			names = append(names, t)
		}
	})
	p.outputLimit()
	p.topics.prefetch(names)
}
