package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// workload builds the account commands every contender consumes: Avro
// single-object values with the headers client.Client writes, keyed by
// account id (murmur2-partitioned, as the processor requires), without a
// correlation id (replies go to the default reply topic).
type workload struct {
	accounts int
	open     []byte
	deposit  []byte
	set      *schemas.Set
}

func newWorkload(accounts int) (*workload, error) {
	set, err := schemas.LoadAccount()
	if err != nil {
		return nil, err
	}
	w := &workload{accounts: accounts, set: set}
	for _, c := range []struct {
		dst  *[]byte
		name string
		v    any
	}{
		{&w.open, "OpenAccount", account.OpenAccount{Owner: "Bench Owner", Currency: "EUR"}},
		{&w.deposit, "Deposit", account.Deposit{Amount: 1}},
	} {
		codec, err := set.Codec(c.name)
		if err != nil {
			return nil, err
		}
		if *c.dst, err = codec.Encode(c.v); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func accountID(i int) string { return fmt.Sprintf("acct-%07d", i) }

func commandRecord(topic, id, aggID, typ string, value []byte) *kgo.Record {
	return &kgo.Record{
		Topic: topic,
		Key:   []byte(aggID),
		Value: value,
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte(id)},
			{Key: wire.HeaderCommandType, Value: []byte(typ)},
			{Key: wire.HeaderAggregateType, Value: []byte("account")},
			{Key: wire.HeaderContentType, Value: []byte(wire.ContentTypeAvro)},
		},
	}
}

// opens returns the i-th OpenAccount command (one per account).
func (w *workload) opens(topic, run string) func(i int) *kgo.Record {
	return func(i int) *kgo.Record {
		return commandRecord(topic, fmt.Sprintf("%s-open-%d", run, i), accountID(i), "OpenAccount", w.open)
	}
}

// deposits returns the i-th Deposit command, round-robin over the accounts.
func (w *workload) deposits(topic, run string) func(i int) *kgo.Record {
	return func(i int) *kgo.Record {
		return commandRecord(topic, fmt.Sprintf("%s-dep-%d", run, i), accountID(i%w.accounts), "Deposit", w.deposit)
	}
}

// produceAll produces n records asynchronously and waits for all of them.
func produceAll(ctx context.Context, cl *kgo.Client, n int, rec func(i int) *kgo.Record) error {
	var (
		mu       sync.Mutex
		firstErr error
	)
	for i := 0; i < n; i++ {
		cl.Produce(ctx, rec(i), func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}

// waitFor polls cond every few milliseconds until it holds, ctx ends or
// timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// throughput runs the common measurement: warm up with one OpenAccount per
// account (untimed: joins the group, creates state), then time `commands`
// deposits produced while the contender consumes, until processed reports
// them all done.
func (w *workload) throughput(ctx context.Context, prod *kgo.Client, topic, run string, commands int, timeout time.Duration, processed func() (int64, error)) (float64, error) {
	rate, _, err := w.throughputCPU(ctx, prod, topic, run, commands, timeout, processed)
	return rate, err
}

// throughputCPU is throughput that also returns the CPU time the whole
// process (broker, producer and contender alike) spent per timed command:
// less sensitive to the machine's other tenants than the rate.
func (w *workload) throughputCPU(ctx context.Context, prod *kgo.Client, topic, run string, commands int, timeout time.Duration, processed func() (int64, error)) (float64, time.Duration, error) {
	if err := produceAll(ctx, prod, w.accounts, w.opens(topic, run)); err != nil {
		return 0, 0, err
	}
	done := func(want int64) func() (bool, error) {
		return func() (bool, error) {
			n, err := processed()
			return n >= want, err
		}
	}
	if err := waitFor(ctx, timeout, "the warm-up commands", done(int64(w.accounts))); err != nil {
		return 0, 0, err
	}
	start, cpu0 := time.Now(), cpuTime()
	if err := produceAll(ctx, prod, commands, w.deposits(topic, run)); err != nil {
		return 0, 0, err
	}
	if err := waitFor(ctx, timeout, "the timed commands", done(int64(w.accounts+commands))); err != nil {
		return 0, 0, err
	}
	return float64(commands) / time.Since(start).Seconds(), (cpuTime() - cpu0) / time.Duration(commands), nil
}

// topicsFor names one scenario's topics.
func topicsFor(prefix string) topology.Topics {
	return topology.Topics{
		Commands: prefix + "commands", Events: prefix + "events", Changelog: prefix + "snapshots-changelog",
		Replies: prefix + "command_reply", DeadLetters: prefix + "commands-dlq",
	}
}

// avgValueSize samples up to perPartition committed records at the end of
// each partition of topic and returns their mean value size and mean header
// count.
func avgValueSize(ctx context.Context, opts []kgo.Opt, topic string, perPartition int64) (int, int, error) {
	adm, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, 0, err
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, 0, err
	}
	offsets := map[int32]kgo.Offset{}
	want := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset == 0 {
			return
		}
		from := max(o.Offset-perPartition, 0)
		offsets[o.Partition] = kgo.NewOffset().At(from)
		want += int(o.Offset - from)
	})
	if len(offsets) == 0 {
		return 0, 0, fmt.Errorf("topic %s is empty", topic)
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, opts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	var n, bytes, headers int
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for n < want/2 && sctx.Err() == nil {
		cl.PollFetches(sctx).EachRecord(func(r *kgo.Record) {
			n++
			bytes += len(r.Value)
			headers += len(r.Headers)
		})
	}
	if n == 0 {
		return 0, 0, fmt.Errorf("no records read from %s", topic)
	}
	return bytes / n, headers / n, nil
}
