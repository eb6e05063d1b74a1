package topology_test

import (
	"slices"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// The KIP-848 consumer group protocol works end to end with the
// transactional session (commands answered exactly once), and standby
// placement finds the group's members and assignments through
// ConsumerGroupDescribe (DescribeGroups does not describe a consumer-protocol
// group: each worker would be a standby for nothing).
func TestConsumerGroupProtocolWithStandbys(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	opts := func(c *topology.Config) {
		c.GroupProtocol = topology.GroupProtocolConsumer
		c.Standbys = 1
		c.StandbyInterval = 100 * time.Millisecond
	}
	w0 := h.StartProcessor("w0", "", opts)
	w1 := h.StartProcessor("w1", "", opts)
	waitSplit(t, w0, w1)
	for _, id := range idsPerPartition("kip848") {
		wantStatus(t, h.Send(cmd("account", id, "OpenAccount", `{"owner":"O","currency":"EUR"}`)), wire.StatusAccepted, 1)
		wantStatus(t, h.Send(cmd("account", id, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 2)
	}
	standbyOf := func(w interface {
		PartitionStates() []topology.PartitionState
	}) []int32 {
		var out []int32
		for _, s := range w.PartitionStates() {
			if s.Role == topology.RoleStandby {
				out = append(out, s.Partition)
			}
		}
		slices.Sort(out)
		return out
	}
	eventually(t, "each worker to be the standby of the other's partitions", func() bool {
		a0, a1 := w0.Assigned(), w1.Assigned()
		slices.Sort(a0)
		slices.Sort(a1)
		return len(a0) > 0 && len(a1) > 0 && slices.Equal(standbyOf(w0), a1) && slices.Equal(standbyOf(w1), a0)
	})
	versions, _ := eventsOf(t, h)
	contiguous(t, versions)
}
