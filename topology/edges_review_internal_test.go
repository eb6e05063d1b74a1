package topology

import (
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/wire"
)

// A command repeating kafka_replyTopic 2,000 times (allowed names under a
// prefix) made the worker look every name up in one metadata request and
// fill its reply topic cache with them, evicting the topics of every other
// client. Only the header the reply goes to (the last one) counts.
func TestPrefetchLooksUpOnlyTheEffectiveReplyTopic(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "replies-last"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
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
