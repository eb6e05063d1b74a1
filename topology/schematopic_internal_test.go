package topology

import (
	"strings"
	"testing"
)

// TestSchemaTopicIsNeverAReplyTopic: no command can make a worker write its
// reply into the schema topic (a forged "schema" there would be learned by
// older builds), and no allow-list may cover it.
func TestSchemaTopicIsNeverAReplyTopic(t *testing.T) {
	t.Parallel()
	c := Config{Brokers: []string{"b:1"}, InstanceID: "i", StateDir: "d", ReplyTopics: []string{"kcqrs-*"}}
	c.setDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "kcqrs-*") {
		t.Fatalf("Validate of an allow-list covering the schema topic: %v", err)
	}
	c.ReplyTopics = []string{DefaultSchemaTopic}
	if err := c.Validate(); err == nil {
		t.Fatal("Validate allowed the schema topic as a reply topic")
	}
	if why := c.replyTopicRefusal(DefaultSchemaTopic); why == "" {
		t.Fatal("the schema topic is an allowed reply topic")
	}
}

// TestKeysTopicIsNeverAReplyTopic: a forged reply in the keys topic would be
// read as a data key by every worker at start (a wrong-key stop for all of
// them), so the keys topic is protected whether or not this worker has a
// master key: the default name always, a configured one too.
func TestKeysTopicIsNeverAReplyTopic(t *testing.T) {
	t.Parallel()
	c := Config{Brokers: []string{"b:1"}, InstanceID: "i", StateDir: "d"}
	c.setDefaults()
	if why := c.replyTopicRefusal("kcqrs-keys"); why == "" {
		t.Fatal("the default keys topic is an allowed reply topic without a master key")
	}
	c.Topics.Keys = "my-keys"
	if why := c.replyTopicRefusal("my-keys"); why == "" {
		t.Fatal("a configured keys topic is an allowed reply topic")
	}
	c.ReplyTopics = []string{"my-*"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "my-*") {
		t.Fatalf("Validate of an allow-list covering the keys topic: %v", err)
	}
}
