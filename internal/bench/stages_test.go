package bench

import (
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/topology"
)

// TestStagesAddUpToTheLatency: a command's stages, from the client's trace
// and the processor's report, add up to its command-to-reply latency.
func TestStagesAddUpToTheLatency(t *testing.T) {
	start := time.Unix(100, 0)
	at := start.Add(time.Second)
	tr := client.Trace{Sent: at.Add(3 * time.Millisecond), Polled: at.Add(40 * time.Millisecond), Received: at.Add(41 * time.Millisecond)}
	ps := topology.CommandStages{Produced: at.Add(time.Millisecond), Fetched: at.Add(2 * time.Millisecond), Decided: at.Add(5 * time.Millisecond), Committed: at.Add(38 * time.Millisecond)}
	s, ok := newSample(start, at, tr, ps, true)
	if !ok {
		t.Fatal("not joined")
	}
	var sum time.Duration
	for _, d := range s.stages {
		sum += d
	}
	if sum != s.total || s.total != 41*time.Millisecond || s.since != time.Second {
		t.Fatalf("stages %v sum to %v, total %v, since %v", s.stages, sum, s.total, s.since)
	}
	// fetch is negative here: the processor polled before the client had
	// its produce acknowledgement.
	if s.stages[1] != -time.Millisecond || s.stages[3] != 33*time.Millisecond {
		t.Fatalf("stages %v", s.stages)
	}
	if _, ok := newSample(start, at, tr, ps, false); ok {
		t.Fatal("joined without the processor's stages")
	}
}

// TestBreakdownNamesTheSlowStage: when the slowest commands spent their time
// in one stage, the tail's medians say which, and when they were sent.
func TestBreakdownNamesTheSlowStage(t *testing.T) {
	var samples []sample
	for i := 0; i < 1000; i++ {
		s := sample{since: time.Duration(i) * time.Millisecond}
		for j := range s.stages {
			s.stages[j] = time.Millisecond
		}
		if i >= 500 && i < 510 { // ten commands stalled in "commit"
			s.stages[3] = time.Second
		}
		for _, d := range s.stages {
			s.total += d
		}
		samples = append(samples, s)
	}
	b := breakdown(samples)
	if b.joined != 1000 || b.tail != 10 {
		t.Fatalf("joined %d tail %d", b.joined, b.tail)
	}
	for i, d := range b.tailMedian {
		want := time.Millisecond
		if stageNames[i] == "commit" {
			want = time.Second
		}
		if d != want {
			t.Errorf("tail median of %s = %v, want %v", stageNames[i], d, want)
		}
	}
	if b.tailWhen[0] != 500*time.Millisecond || b.tailWhen[2] != 509*time.Millisecond {
		t.Errorf("tail sent %v, want 500ms to 509ms", b.tailWhen)
	}
	if b.p50[3] != time.Millisecond {
		t.Errorf("p50 of commit %v", b.p50[3])
	}
	if got := breakdown(nil).String(); got == "" {
		t.Error("empty breakdown says nothing")
	}
}
