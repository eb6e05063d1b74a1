package main

import (
	"os"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/config"
)

// TestBrokerConfig: every bad broker setting is reported at once, and the
// README's table of the broker's settings is current.
func TestBrokerConfig(t *testing.T) {
	t.Setenv("KCQRS_BROKER_COMPACTION_INTERVAL", "often")
	err := runBroker([]string{"--port", "70000"})
	if err == nil || !strings.Contains(err.Error(), "KCQRS_BROKER_COMPACTION_INTERVAL") || !strings.Contains(err.Error(), "--port 70000") {
		t.Fatalf("runBroker: %v", err)
	}
	s := config.New("broker", config.DefaultPrefix+"BROKER_")
	brokerSettings(s)
	readme, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), s.Markdown()) {
		t.Fatalf("docs/operations.md lacks the broker's settings table:\n%s", s.Markdown())
	}
}
