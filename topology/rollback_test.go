package topology_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/examples/accountnext"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// idOn returns an aggregate id (prefix-n) whose key hashes to partition part.
func idOn(prefix string, part int32) string {
	for n := 0; ; n++ {
		id := fmt.Sprintf("%s-%d", prefix, n)
		if topology.PartitionFor([]byte(id), partitions) == part {
			return id
		}
	}
}

type accountnextDeposit = accountnext.MoneyDeposited

// nextSet is the next release's account schemas.
func nextSet() (*schemas.Set, error) {
	fsys, err := accountnext.Schemas()
	if err != nil {
		return nil, err
	}
	return schemas.Load(fsys, "account")
}

// nextRegistry serves the next release of the account example.
func nextRegistry(t *testing.T) *topology.Registry {
	t.Helper()
	reg, err := accountnext.Registry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// waitReply waits for a reply sent by sendAsync.
func waitReply(t *testing.T, what string, ch <-chan sendResult, status wire.Status, version int64) {
	t.Helper()
	select {
	case s := <-ch:
		if s.err != nil {
			t.Fatalf("%s: %v", what, s.err)
		}
		if s.rep.Status != status || s.rep.Version != version {
			t.Fatalf("%s: reply %+v, want %s at version %d", what, s.rep, status, version)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("%s: no reply within 90s", what)
	}
}

// TestRollbackStopsOnlyUnreadablePartitions: the next release (a fully
// compatible change: fields added with defaults) wrote events and
// snapshots without publishing its schemas; the previous build is started
// again over the same topics (a rollback, or an old worker inheriting
// partitions in a rolling upgrade). It cannot read the newer records. It must stop only the partitions whose
// data it cannot read (no transaction aborted for them, no hot loop), keep
// answering the others, report not ready naming those partitions and the
// schema fingerprint it lacks, and process the waiting commands once a build
// that reads them takes over.
func TestRollbackStopsOnlyUnreadablePartitions(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// The schema topic of an external cluster is shared: another run may
	// have published the next release's schemas there.
	h.RequireEmbedded()
	regOld, regNext := h.Registry, nextRegistry(t)
	dir := t.TempDir()

	stateOnly := idOn("state-only", 1) // snapshot of the next release, events readable
	unknown := idOn("unknown", 0)      // snapshot and a MoneyDeposited of the next release
	garbled := idOn("garbled", 3)      // a snapshot envelope nobody knows
	fresh := idOn("fresh", 2)          // only ever written by the old build

	h.Registry = regNext
	// A newer build that does not publish its schemas (Config.SchemaTopic
	// "-"), or a foreign writer: the old build cannot learn them.
	next := h.StartProcessor("w1", dir, func(c *topology.Config) { c.SchemaTopic = "-" })
	wantStatus(t, h.Send(cmd("account", stateOnly, "OpenAccount", `{"owner":"Ann","currency":"EUR"}`)), wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("account", unknown, "OpenAccount", `{"owner":"Bob","currency":"EUR"}`)), wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("account", unknown, "Deposit", `{"amount":10}`)), wire.StatusAccepted, 2)
	wantStatus(t, h.Send(cmd("account", garbled, "OpenAccount", `{"owner":"Cy","currency":"EUR"}`)), wire.StatusAccepted, 1)
	if err := next.Stop(); err != nil {
		t.Fatal(err)
	}
	// A snapshot of garbled whose envelope was written with a schema no
	// build knows (fingerprint 0x0909...).
	bogusFP := uint64(0x0909090909090909)
	bogus := append([]byte{0xC3, 0x01, 9, 9, 9, 9, 9, 9, 9, 9}, 0, 1, 2)
	prod := manualProducer(t, h)
	defer prod.Close()
	if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: h.Topic("snapshots-changelog"), Partition: 3,
		Key: []byte("account/" + garbled), Value: bogus}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// The rollback: the previous build, same instance and state directory.
	h.Registry = regOld
	old := h.StartProcessor("w1", dir)
	blocked := sendAsync(h, cmd("account", unknown, "Deposit", `{"amount":5}`), 3*time.Minute)
	blockedGarbled := sendAsync(h, cmd("account", garbled, "Deposit", `{"amount":5}`), 3*time.Minute)
	rebuilt := sendAsync(h, cmd("account", stateOnly, "Deposit", `{"amount":7}`), 3*time.Minute)
	opened := sendAsync(h, cmd("account", fresh, "OpenAccount", `{"owner":"Dee","currency":"EUR"}`), 3*time.Minute)
	// The partitions it can read keep answering.
	waitReply(t, "a snapshot of the next release whose events the old build reads (rebuilt)", rebuilt, wire.StatusAccepted, 2)
	waitReply(t, "an account only the old build wrote", opened, wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("account", fresh, "Deposit", `{"amount":3}`)), wire.StatusAccepted, 2)

	// Not ready while it holds data it cannot read.
	eventually(t, "the old build to report not ready", func() bool { return !old.Ready() })
	select {
	case s := <-blocked:
		t.Fatalf("a command on data the old build cannot read was answered: %+v %v", s.rep, s.err)
	case s := <-blockedGarbled:
		t.Fatalf("a command on a garbled snapshot was answered: %+v %v", s.rep, s.err)
	default:
	}
	if st := old.Stats(); st.Aborted != 0 {
		t.Fatalf("the old build aborted %d transactions (stats %+v): unreadable data must take its partition out of the transaction, not abort it", st.Aborted, st)
	}
	// Still answering the readable partitions, and still not aborting.
	wantStatus(t, h.Send(cmd("account", fresh, "Deposit", `{"amount":4}`)), wire.StatusAccepted, 3)
	if st := old.Stats(); st.Aborted != 0 || old.Ready() {
		t.Fatalf("after more commands: aborted %d, ready %v", st.Aborted, old.Ready())
	}
	// It names the partitions and the schemas it lacks, and checks again
	// with a backoff (no transaction, no abort).
	set, err := nextSet()
	if err != nil {
		t.Fatal(err)
	}
	nextState, _ := set.Codec("Account")
	nextDeposit, _ := set.Codec("MoneyDeposited")
	want := map[int32][]uint64{
		0: {nextState.Fingerprint(), nextDeposit.Fingerprint()},
		3: {bogusFP},
	}
	eventually(t, "both unreadable partitions checked twice", func() bool {
		us := old.Unreadable()
		return len(us) == 2 && us[0].Attempts >= 2 && us[1].Attempts >= 2
	})
	for _, u := range old.Unreadable() {
		if fmt.Sprintf("%x", u.Fingerprints) != fmt.Sprintf("%x", want[u.Partition]) {
			t.Errorf("partition %d lacks %x, want %x (%v)", u.Partition, u.Fingerprints, want[u.Partition], u.Err)
		}
	}
	problem := old.Problem()
	for _, s := range []string{"partition 0 (account/" + unknown, "partition 3 (account/" + garbled, fmt.Sprintf("%#016x", nextDeposit.Fingerprint()), fmt.Sprintf("%#016x", bogusFP)} {
		if !strings.Contains(problem, s) {
			t.Errorf("Problem() = %q; want it to name %q", problem, s)
		}
	}
	if st := old.Stats(); st.Aborted != 0 || st.UnreadableDeferrals < 4 || old.Ready() {
		t.Fatalf("while checking again: aborted %d, unreadable deferrals %d, ready %v", st.Aborted, st.UnreadableDeferrals, old.Ready())
	}
	for _, ps := range old.PartitionStates() {
		if ps.Role == topology.RoleActive && ps.Ready != (ps.Partition != 0 && ps.Partition != 3) {
			t.Fatalf("partition states %+v: 0 and 3 must be reported not ready, the others ready", old.PartitionStates())
		}
	}

	// The schemas appear in the schema topic later (published by hand
	// here): the next check learns them, the waiting command is processed
	// by the old build, and only the garbled partition stays held back.
	for _, c := range []*schemas.Codec{nextState, nextDeposit} {
		if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: topology.DefaultSchemaTopic, Partition: 0,
			Key: []byte(fmt.Sprintf("%016x", c.Fingerprint())), Value: []byte(c.Source())}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	waitReply(t, "the waiting command, once its schemas can be learned", blocked, wire.StatusAccepted, 3)
	eventually(t, "only the garbled partition held back", func() bool {
		us := old.Unreadable()
		return len(us) == 1 && us[0].Partition == 3
	})
	for _, ps := range old.PartitionStates() {
		if ps.Role == topology.RoleActive && ps.Ready != (ps.Partition != 3) {
			t.Fatalf("partition states %+v: only 3 must be reported not ready", old.PartitionStates())
		}
	}
	if st := old.Stats(); st.Aborted != 0 || old.Ready() {
		t.Fatalf("after learning: aborted %d, ready %v", st.Aborted, old.Ready())
	}
	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}

	// Roll forward: the next release reads what the old build wrote.
	h.Registry = regNext
	h.StartProcessor("w1", dir)
	wantStatus(t, h.Send(cmd("account", unknown, "Deposit", `{"amount":1}`)), wire.StatusAccepted, 4)
	versions, _ := eventsOf(t, h)
	for id, want := range map[string][]int64{stateOnly: {1, 2}, unknown: {1, 2, 3, 4}, fresh: {1, 2, 3}, garbled: {1}} {
		if got := versions["account/"+id]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("events of %s: versions %v, want %v", id, got, want)
		}
	}
}
