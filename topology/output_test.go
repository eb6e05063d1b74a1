package topology

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// recordBytes never under-estimates what franz-go checks against
// ProducerBatchMaxBytes: a record whose estimate equals the producer's limit
// is produced. (An under-estimate would let a command through whose output
// then fails the whole transaction.)
func TestRecordBytesIsWhatFranzGoAccepts(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"), kfake.BrokerConfigs(map[string]string{"message.max.bytes": "2000000"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	shapes := []*kgo.Record{
		{Value: []byte(strings.Repeat("v", 600))},
		{Key: []byte(strings.Repeat("k", 300)), Value: []byte(strings.Repeat("v", 100_000))},
		{Key: []byte("k"), Value: []byte(strings.Repeat("v", 999_000)), Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("b")}}},
		{Value: []byte(strings.Repeat("v", 5000)), Headers: func() []kgo.RecordHeader {
			var hs []kgo.RecordHeader
			for range 200 {
				hs = append(hs, kgo.RecordHeader{Key: strings.Repeat("h", 130), Value: []byte(strings.Repeat("x", 200))})
			}
			return hs
		}()},
	}
	for i, r := range shapes {
		limit := recordBytes(r)
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerBatchMaxBytes(int32(limit)), kgo.MaxBufferedBytes(4<<20))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		r.Topic = "t"
		err = cl.ProduceSync(ctx, r).FirstErr()
		cancel()
		cl.Close()
		if err != nil {
			t.Fatalf("shape %d: estimated %d bytes, but franz-go refused it with that limit: %v", i, limit, err)
		}
		// And the estimate is close: within 100 bytes of the record's content.
		content := len(r.Key) + len(r.Value)
		for _, h := range r.Headers {
			content += len(h.Key) + len(h.Value)
		}
		if limit-content > 100+4*len(r.Headers) {
			t.Fatalf("shape %d: estimate %d for %d bytes of content", i, limit, content)
		}
	}
}

func TestCapMessage(t *testing.T) {
	t.Parallel()
	if s := capMessage("short"); s != "short" {
		t.Fatal(s)
	}
	long := strings.Repeat("\u0085", 200_000)
	s := capMessage(long)
	if len(s) > MaxReplyMessageBytes || !utf8.ValidString(s) || !strings.Contains(s, "truncated, 400000 bytes") {
		t.Fatalf("capped to %d bytes, valid UTF-8 %v: %q", len(s), utf8.ValidString(s), s[len(s)-40:])
	}
}

func TestTopicPatterns(t *testing.T) {
	t.Parallel()
	c := Config{Topics: Topics{}, ReplyTopics: []string{"my-replies", "replies-*"}, InternalTopics: []string{"kcqrs-proj-*", "transfer-replies"}}
	c.setDefaults()
	for topic, want := range map[string]bool{
		"command_reply": true, "my-replies": true, "replies-7": true, "replies-": true,
		"my-replies2": false, "other": false, "snapshots-changelog": false, "events": false, "commands": false,
		"commands-dlq": false, "__consumer_offsets": false, "__transaction_state": false, "transfer-replies": false,
		"kcqrs-proj-accounts-v1-table": false, "": false, "bad topic": false, strings.Repeat("r", 300): false,
	} {
		if got := c.replyTopicRefusal(topic) == ""; got != want {
			t.Errorf("reply to %q allowed=%v, want %v (%s)", topic, got, want, c.replyTopicRefusal(topic))
		}
	}
}

// The reply topic cache is bounded: a client naming many topics cannot grow it.
func TestTopicCacheIsBounded(t *testing.T) {
	t.Parallel()
	cl := fakeClusterClient(t, "known")
	tc := newTopicCache(cl)
	tc.configure(&Config{ReplyTopicCacheSize: 10, ReplyLookupTimeout: 2 * time.Second})
	for i := range 50 {
		if _, err := tc.partitions("missing-" + strings.Repeat("x", i)); err == nil || !isDefinitiveTopicErr(err) {
			t.Fatalf("missing topic: %v, want a definitive error", err)
		}
	}
	if n, err := tc.partitions("known"); err != nil || n != 2 {
		t.Fatalf("known topic: %d %v", n, err)
	}
	if tc.len() > 10 {
		t.Fatalf("cache holds %d entries, bound 10", tc.len())
	}
}

// FuzzReplyTopicRefusal: whatever the allow-list (one that Validate
// accepts) and whatever topic a command names, an allowed topic is the
// default reply topic or a legal name that no protected pattern matches.
func FuzzReplyTopicRefusal(f *testing.F) {
	f.Add("replies-*", "transfer-*", "replies-7")
	f.Add("my-replies", "", "snapshots-changelog")
	f.Add("e*", "", "events")
	f.Add("__*", "", "__consumer_offsets")
	f.Add("a", "a*", "a")
	f.Fuzz(func(t *testing.T, allow, internal, topic string) {
		c := Config{Brokers: []string{"b:1"}, InstanceID: "i", StateDir: "d", ReplyTopics: []string{allow}}
		if internal != "" {
			c.InternalTopics = []string{internal}
		}
		c.setDefaults()
		if c.Validate() != nil {
			return // refused at start: never runs
		}
		if c.replyTopicRefusal(topic) != "" || topic == c.Topics.Replies {
			return
		}
		if why := validTopicName(topic, false); why != "" {
			t.Fatalf("allowed %q: %s", topic, why)
		}
		for _, p := range c.protectedTopics() {
			if p.matches(topic) {
				t.Fatalf("allow-list %q, internal %q: allowed the protected %q (%s)", allow, internal, topic, p)
			}
		}
	})
}

// fakeClusterClient is a client of a new one-broker kfake cluster that
// holds the topics (two partitions each); both end with the test.
func fakeClusterClient(t *testing.T, topics ...string) *kgo.Client {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
