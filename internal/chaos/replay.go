package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/topology"
)

// signingKey signs the transfer legs of every saga of the run: the
// workers' (KCQRS_TRANSFER_SIGNING_KEY) and the replays'.
const signingKey = "chaos-transfer-legs"

// sagaReplays replays the saga's history while the workload runs, until
// ctx ends: from time to time a saga in a new group (kcqrs-transfers-
// replay-N: a genuine first start for the saga's offset check) is resumed
// at the start of the events topic, as `kcqrs transfers resume --at start`
// does, runs in this process for a few seconds beside the workers' sagas,
// and stops. Every leg it sends was sent before (or is sent by the
// workers' sagas too): the processors must deduplicate it, or refuse it
// without effect (already_credited, unknown_transfer), which check()
// verifies, with the money and the one-end-per-debit checks.
func (r *run) sagaReplays(ctx context.Context) {
	reg, err := examples.Registry()
	if err != nil {
		r.violate("saga replay: registry: %v", err)
		return
	}
	logf, err := os.OpenFile(filepath.Join(r.dir, "saga-replays.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		r.violate("saga replay: log: %v", err)
		return
	}
	defer logf.Close()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.between(2*time.Second, 6*time.Second)):
		}
		if err := r.sagaReplay(ctx, reg, logf, n); err != nil && ctx.Err() == nil {
			// Faults and kills may fail a replay; it proves nothing then,
			// and breaks nothing: logged, not a violation.
			r.logf("saga replay %d: %v", n, err)
		}
	}
}

// sagaReplay runs replay n: resume its new group at the start of the
// events topic, run a saga there for a few seconds, stop it.
func (r *run) sagaReplay(ctx context.Context, reg *topology.Registry, out io.Writer, n int) error {
	group := fmt.Sprintf("kcqrs-transfers-replay-%d", n)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	at, err := saga.Resume(rctx, saga.ResumeOptions{Brokers: r.brokers, Group: group, At: "start"})
	cancel()
	if err != nil {
		return fmt.Errorf("resume %s at start: %w", group, err)
	}
	sg, err := saga.New(saga.Config{
		Brokers: r.brokers, Group: group, InstanceID: "replay",
		// The workers' key: the processors verify the replayed legs'
		// signatures as the workers'.
		SigningKey:     []byte(signingKey),
		SessionTimeout: r.o.SessionTimeout, RebalanceTimeout: r.o.RebalanceTimeout, TransactionTimeout: r.o.TransactionTimeout,
		Logger: slog.New(slog.NewTextHandler(out, nil)).With("replay", n),
	}, reg)
	if err != nil {
		return err
	}
	runFor := r.between(3*time.Second, 8*time.Second)
	r.logf("saga replay %d: group %s from the start of events %v, for %v", n, group, at, runFor)
	rctx, cancel = context.WithTimeout(ctx, runFor)
	defer cancel()
	err = sg.Run(rctx)
	st := sg.Stats()
	r.mu.Lock()
	r.sum.SagaReplays++
	r.sum.SagaReplayed += st.Debits + st.Completed + st.Refunded
	r.mu.Unlock()
	r.logf("saga replay %d stopped: %d debits, %d completions, %d refunds replayed", n, st.Debits, st.Completed, st.Refunded)
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
