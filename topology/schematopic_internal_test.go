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
