package chaos

import (
	"testing"
	"time"
)

// TestProgress: a partition is stalled only while a command for it waits
// and none is answered; an idle partition is not stalled, and a stretch
// still open at the end counts.
func TestProgress(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	pr := newProgress()
	pr.now = func() time.Time { return now }
	at := func(s int) { now = t0.Add(time.Duration(s) * time.Second) }

	// Partition 0: two commands overlap; replies 3 s and 7 s after the
	// first was sent: the longest stretch without a reply is 4 s.
	pr.begin(0)
	at(1)
	pr.begin(0)
	at(3)
	pr.end(0, true)
	at(7)
	pr.end(0, true)
	// Idle for 100 s: not a stall.
	at(107)
	pr.begin(0)
	at(109)
	pr.end(0, true)
	// Partition 1: one command, its sender gives up after 5 s (a stall
	// all the same), then one answered after 2 s.
	at(110)
	pr.begin(1)
	at(115)
	pr.end(1, false)
	at(120)
	pr.begin(1)
	at(122)
	pr.end(1, true)
	if gap, part, _ := pr.worst(); gap != 5*time.Second || part != 1 {
		t.Fatalf("worst = %v on %d, want 5s on 1 (the command given up)", gap, part)
	}
	// Partition 2: a command waiting since 130 s and never answered.
	at(130)
	pr.begin(2)
	at(140)
	if gap, part, _ := pr.worst(); gap != 10*time.Second || part != 2 {
		t.Fatalf("worst = %v on %d, want 10s on 2 (still waiting)", gap, part)
	}
}
