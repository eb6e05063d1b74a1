package topology

import (
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/wire"
)

// A command repeating kafka_replyTopic 2,000 times (allowed names under a
// prefix) made the worker look every name up in one metadata request and
// fill its reply topic cache with them, evicting the topics of every other
// client. Only the header the reply goes to (the last one) counts.
func TestPrefetchLooksUpOnlyTheEffectiveReplyTopic(t *testing.T) {
	t.Parallel()
	cl := fakeClusterClient(t, "replies-last")
	cfg := Config{Brokers: []string{"b:1"}, InstanceID: "i", StateDir: "d", ReplyTopics: []string{"replies-*"}}
	cfg.setDefaults()
	p := &Processor{cfg: cfg, topics: newTopicCache(cl)}
	rec := &kgo.Record{Topic: "commands", Key: []byte("k")}
	for i := range 2000 {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: wire.HeaderReplyTopic, Value: []byte("replies-" + strconv.Itoa(i))})
	}
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: wire.HeaderReplyTopic, Value: []byte("replies-last")})
	meta, _ := parseCommandMeta(rec, cfg.Topics.Replies)
	if meta.reply.topic != "replies-last" {
		t.Fatalf("the reply goes to %q, want the last header's topic", meta.reply.topic)
	}
	p.prefetchReplyTopics(kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "commands", Partitions: []kgo.FetchPartition{{Records: []*kgo.Record{rec}}}}}}})
	if n := p.topics.len(); n != 1 {
		t.Fatalf("one command cached %d reply topics, want 1 (the one its reply goes to)", n)
	}
	if n, err := p.topics.partitions("replies-last"); err != nil || n != 2 {
		t.Fatalf("replies-last: %d %v", n, err)
	}
}

// Repeated headers: the last one wins for every header, as for Spring's
// lastHeader, so the content type a command is decoded with is the one its
// reply is encoded in and the one a client reading the last header expects.
// Before: [json, avro] decoded the command as JSON, and [bogus, json] was
// refused for the first header.
func TestRepeatedContentTypeLastWins(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		types []string
		want  string // "" for an unsupported content type error
	}{
		{[]string{wire.ContentTypeJSON, wire.ContentTypeAvro}, wire.ContentTypeAvro},
		{[]string{wire.ContentTypeAvro, wire.ContentTypeJSON}, wire.ContentTypeJSON},
		{[]string{"text/bogus", wire.ContentTypeJSON}, wire.ContentTypeJSON},
		{[]string{wire.ContentTypeJSON, "text/bogus"}, ""},
		{[]string{wire.ContentTypeJSON, ""}, wire.ContentTypeAvro},
	} {
		rec := &kgo.Record{Key: []byte("k"), Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte("c")}, {Key: wire.HeaderAggregateType, Value: []byte("account")},
		}}
		for _, ct := range tt.types {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: wire.HeaderContentType, Value: []byte(ct)})
		}
		meta, err := parseCommandMeta(rec, "command_reply")
		switch {
		case tt.want == "" && (err == nil || !strings.Contains(err.Error(), CodeUnsupportedContent)):
			t.Errorf("%q: %v, want %s", tt.types, err, CodeUnsupportedContent)
		case tt.want != "" && err != nil:
			t.Errorf("%q: %v", tt.types, err)
		case tt.want != "" && meta.reply.contentType != tt.want:
			t.Errorf("%q: content type %q, want %q", tt.types, meta.reply.contentType, tt.want)
		}
	}
}

// Names that look like a protected or allowed topic but are not, and
// repeated reply headers: the topic checked is the topic the reply goes to.
// (No defect found; a regression table.)
func TestReplyTopicLookalikes(t *testing.T) {
	t.Parallel()
	c := Config{Brokers: []string{"b:1"}, InstanceID: "i", StateDir: "d",
		ReplyTopics: []string{"replies-*", "my-replies"}, InternalTopics: []string{"kcqrs-proj-*", "transfer-replies"}}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for topic, allowed := range map[string]bool{
		"events\x00": false, "events ": false, " events": false, "Events": false, "еvents": false, // Cyrillic е
		"command_reply\x00": false, "command_reply ": false, "my-replies\x00": false, "my-replies ": false,
		"replies-": true, "replies-\u200b": false, "REPLIES-1": false, "replies-kcqrs-proj-x": true,
		"kcqrs-proj-accounts-table": false, "transfer-replies": false, "__consumer_offsets": false,
		"__transaction_state": false, "snapshots-changelog": false, "commands-dlq": false,
		"my-replies": true, "command_reply": true, strings.Repeat("r", 249): false, "replies-" + strings.Repeat("r", 241): true,
		"replies-" + strings.Repeat("r", 242): false,
	} {
		if got := c.replyTopicRefusal(topic) == ""; got != allowed {
			t.Errorf("%q: allowed %v, want %v (%s)", topic, got, allowed, c.replyTopicRefusal(topic))
		}
	}
	for _, tt := range []struct {
		values []string
		want   string
	}{
		{[]string{"my-replies", "events"}, "events"},
		{[]string{"events", "my-replies"}, "my-replies"},
		{[]string{"events", ""}, "events"},
		{[]string{"", ""}, "command_reply"},
	} {
		rec := &kgo.Record{Key: []byte("k"), Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte("c")}, {Key: wire.HeaderAggregateType, Value: []byte("account")},
		}}
		for _, v := range tt.values {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: wire.HeaderReplyTopic, Value: []byte(v)})
		}
		meta, _ := parseCommandMeta(rec, c.Topics.Replies)
		if meta.reply.topic != tt.want {
			t.Errorf("%q: reply to %q, want %q", tt.values, meta.reply.topic, tt.want)
		}
	}
}

// kafka_replyPartition of the wrong length or negative is a bad header;
// -1 means "hashed", as if absent. (No defect found; a regression table.)
func TestReplyPartitionHeaderShapes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		value []byte
		ok    bool
		set   bool
	}{
		{[]byte{0, 0, 1}, false, false},
		{[]byte{0, 0, 0, 0, 1}, false, false},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 1}, false, false},
		{[]byte{}, false, false},
		{[]byte{0xff, 0xff, 0xff, 0xff}, true, false},  // -1
		{[]byte{0xff, 0xff, 0xff, 0xfb}, false, false}, // -5
		{[]byte{0x80, 0, 0, 0}, false, false},          // MinInt32
		{[]byte{0, 0, 0, 3}, true, true},
	} {
		rec := &kgo.Record{Key: []byte("k"), Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte("c")}, {Key: wire.HeaderAggregateType, Value: []byte("account")},
			{Key: wire.HeaderReplyPartition, Value: tt.value},
		}}
		meta, err := parseCommandMeta(rec, "command_reply")
		if (err == nil) != tt.ok || meta.reply.partitionSet != tt.set || (!tt.set && meta.reply.partition != -1) {
			t.Errorf("%x: err %v, partition %d set %v", tt.value, err, meta.reply.partition, meta.reply.partitionSet)
		}
	}
}
