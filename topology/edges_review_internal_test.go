package topology

import (
	"strconv"
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
