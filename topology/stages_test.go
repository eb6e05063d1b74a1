package topology_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// stageLog is a StageObserver that keeps every report.
type stageLog struct {
	topology.NopObserver
	mu     sync.Mutex
	stages []topology.CommandStages
}

func (s *stageLog) CommandStages(stages []topology.CommandStages) {
	s.mu.Lock()
	s.stages = append(s.stages, stages...) // the slice is only valid during the call
	s.mu.Unlock()
}

func (s *stageLog) of(partition int32, offset int64) []topology.CommandStages {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []topology.CommandStages
	for _, c := range s.stages {
		if c.Partition == partition && c.Offset == offset {
			out = append(out, c)
		}
	}
	return out
}

// TestStagesOfCommittedCommands: an Observer that is also a StageObserver is
// told the stages of every committed command once, in order (produced <=
// fetched <= decided <= committed), under the partition and offset the
// client's trace names; a command whose first transaction aborted is
// reported once, from the transaction that committed. The client's trace
// is ordered too.
func TestStagesOfCommittedCommands(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	log := &stageLog{}
	h.StartProcessor("w0", "", func(c *topology.Config) { c.Observer = log })
	wantStatus(t, h.Send(cmd("account", "s", "OpenAccount", `{"owner":"O","currency":"USD"}`)), wire.StatusAccepted, 1)

	// The next transaction fails at its offset commit and aborts; the
	// command comes again and commits.
	fh := h.Cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.UnknownServerError, Count: 1})
	var traces []client.Trace
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		rep, tr, err := h.Client().SendTrace(ctx, cmd("account", "s", "Deposit", `{"amount":1}`))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, rep, wire.StatusAccepted, int64(i+2))
		if tr.Sent.IsZero() || tr.Polled.Before(tr.Sent) || tr.Received.Before(tr.Polled) {
			t.Fatalf("client trace out of order: %+v", tr)
		}
		traces = append(traces, tr)
	}
	if fh.Hits() == 0 {
		t.Fatal("fault never hit")
	}
	for _, tr := range traces {
		// The reply can be visible before the processor's End returns:
		// wait for the report.
		var got []topology.CommandStages
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if got = log.of(tr.Partition, tr.Offset); len(got) > 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(got) != 1 {
			t.Fatalf("command at %d/%d reported %d times: %+v", tr.Partition, tr.Offset, len(got), got)
		}
		s := got[0]
		// Record timestamps have millisecond precision: Produced may be
		// up to 1ms before the client's own clock said it sent.
		if s.Produced.IsZero() || s.Fetched.Before(s.Produced) || s.Decided.Before(s.Fetched) || s.Committed.Before(s.Decided) {
			t.Fatalf("stages out of order: %+v", s)
		}
		if s.Produced.After(tr.Sent) {
			t.Fatalf("stages %+v do not fit the client's trace %+v", s, tr)
		}
	}
}
