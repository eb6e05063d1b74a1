package topology_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// An EndTxn answered with a non-retriable error that is not a fence
// (INVALID_TXN_STATE here) leaves the commit unknown, like any unconfirmed
// End: the worker must not stop. It backs off, catches the batch's stores up
// and consumes the batch again; the command is applied exactly once.
func TestNonRetriableEndErrorDoesNotStopTheWorker(t *testing.T) {
	t.Parallel()
	h, w := embeddedWorker(t, shortTransactions)
	openAccountID(t, h, "nr")
	hits := failFirstEndTxnCommit(h, kerr.InvalidTxnState)
	dep := cmd("account", "nr", "Deposit", `{"amount":5}`)
	dep.ID = "nr-dep"
	rep, err := sendWithin(h, dep, 45*time.Second)
	if hits.Load() == 0 {
		t.Fatal("the EndTxn control never ran")
	}
	if werr := w.Err(); werr != nil {
		t.Fatalf("worker stopped on a non-retriable End error: %v", werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, rep, wire.StatusAccepted, 2)
	wantStatus(t, h.Send(cmd("account", "nr", "Deposit", `{"amount":1}`)), wire.StatusAccepted, 3)
	if werr := w.Err(); werr != nil {
		t.Fatalf("worker stopped: %v", werr)
	}
	wantContiguous(t, h)
}

// A fenced producer must stop: another worker owns the transactional id.
func TestFencedEndStopsTheWorker(t *testing.T) {
	t.Parallel()
	h, w := embeddedWorker(t)
	openAccountID(t, h, "fe")
	hits := failFirstEndTxnCommit(h, kerr.ProducerFenced)
	res := sendAsync(h, cmd("account", "fe", "Deposit", `{"amount":5}`), 5*time.Second)
	pollUntil(t, "the fenced worker to stop", 30*time.Second, func() bool { return w.Err() != nil })
	if hits.Load() == 0 {
		t.Fatal("the EndTxn control never ran")
	}
	if !errors.Is(w.Err(), kerr.ProducerFenced) {
		t.Fatalf("worker ended with %v, want a ProducerFenced error", w.Err())
	}
	<-res
}

// A schema registry slower than the transaction timeout (registering the
// snapshot envelope takes 8s, the transaction timeout is 7s) must not fence the
// worker: the envelope schemas are registered before Begin, so no
// transaction is open while the registry is slow, and none aborts.
func TestSlowSchemaRegistryRunsOutsideTheTransaction(t *testing.T) {
	t.Parallel()
	fake := srfake.New()
	t.Cleanup(fake.Close)
	target, err := url.Parse(fake.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var slowed atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The snapshot envelope's registration: on main it ran at the end
		// of the first batch, after its event and reply were produced (the
		// broker's transaction was open).
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "kcqrs.Snapshot") && slowed.CompareAndSwap(0, 1) {
			time.Sleep(8 * time.Second) // past the 7s transaction timeout
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(slow.Close)
	h, w := embeddedWorker(t, shortTransactions, func(c *topology.Config) {
		c.SchemaRegistryURLs = []string{slow.URL}
		// The registry client's own timeout (5s by default) would end the
		// slow call before the transaction times out.
		c.SchemaRegistryOpts = []sr.ClientOpt{sr.HTTPClient(&http.Client{Timeout: 30 * time.Second})}
	})
	// One batch: a deposit to an account that does not exist (rejected:
	// its reply is produced, which starts the broker's transaction, and
	// needs no schema id), then the first event and snapshot ever.
	part := topology.PartitionFor([]byte("sr"), partitions)
	rejected := commandRecord("sr", part, "Deposit", `{"amount":1}`)
	open := commandRecord("sr", part, "OpenAccount", `{"owner":"Ann","currency":"EUR"}`)
	corrRejected, corrOpen := withReply(rejected, "", nil), withReply(open, "", nil)
	produceRaw(t, h, nil, rejected, open)
	rep, _ := awaitReply(t, h, "command_reply", corrOpen, 60*time.Second)
	wantStatus(t, rep, wire.StatusAccepted, 1)
	if rep, _ := awaitReply(t, h, "command_reply", corrRejected, 10*time.Second); rep.Status != wire.StatusRejected {
		t.Fatalf("deposit to a missing account answered %+v", rep)
	}
	if slowed.Load() == 0 {
		t.Fatal("the registry was never slow")
	}
	wantStatus(t, h.Send(cmd("account", "sr", "Deposit", `{"amount":3}`)), wire.StatusAccepted, 2)
	if werr := w.Err(); werr != nil {
		t.Fatalf("worker stopped: %v", werr)
	}
	if s := w.Stats(); s.Aborted != 0 || s.SessionsRecreated != 0 {
		t.Fatalf("a transaction aborted while the registry was slow: %+v", s)
	}
	wantContiguous(t, h)
}
