package topology

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fencing the previous incarnation at start.
//
// franz-go initializes a transactional producer's id lazily, at its first
// produce. A worker restarted after a SIGKILL in the middle of a transaction
// would then join the group, be assigned its partitions and ask for their
// committed offsets (RequireStableFetchOffsets) while its previous
// incarnation's transaction is still open. If that transaction already holds
// an offset commit for the group (a worker killed inside End), the broker
// answers UNSTABLE_OFFSET_COMMIT until the transaction ends; the worker
// cannot fetch, so it never produces, so it never initializes the producer id
// that would abort the transaction: its partitions wait for the transaction
// timeout (measured: 10 s instead of 0.3 s, `make bench` liveness rows). Its
// open records also hold back the last stable offset of every partition they
// went to (the shared reply topic included), so read_committed readers of
// other workers' replies wait too.
//
// Kafka Streams calls initTransactions() when it creates a task's producer,
// before it consumes. FencePrevious does the same before the session joins
// the group: an InitProducerID for the worker's transactional id, which bumps
// the epoch and aborts whatever the previous incarnation left open. The
// session's own producer initializes again at its first produce (one more
// epoch bump, nothing left to abort).

// fenceRetryBackoff paces InitProducerID retries while the coordinator
// completes the previous incarnation's abort (CONCURRENT_TRANSACTIONS on
// Kafka) or is loading.
const fenceRetryBackoff = 100 * time.Millisecond

// FencePrevious aborts the transaction a previous incarnation of this worker
// (same transactional id) left open, retrying retriable answers until ctx
// ends or the transaction timeout passes. cl is any client of the cluster.
// Every transactional loop calls it before its session joins its group: the
// saga too, whose leftover legs hold back the command partitions they went
// to, so that the processor could not read those either.
func FencePrevious(ctx context.Context, cl *kgo.Client, txnID string, txnTimeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, txnTimeout)
	defer cancel()
	for {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID = kmsg.StringPtr(txnID)
		req.TransactionTimeoutMillis = int32(txnTimeout / time.Millisecond)
		req.ProducerID, req.ProducerEpoch = -1, -1
		resp, err := req.RequestWith(ctx, cl)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, kerr.ConcurrentTransactions) && !kerr.IsRetriable(err) {
			return fmt.Errorf("topology: fencing the previous transaction of %s: %w", txnID, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topology: fencing the previous transaction of %s: %w (last answer: %w)", txnID, ctx.Err(), err)
		case <-time.After(fenceRetryBackoff):
		}
	}
}
