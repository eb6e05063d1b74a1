package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// historyResult measures package history (issue 16): reading one
// aggregate's events through the index against reading as many consecutive
// records, and against scanning the partition; and what keeping the index
// costs the processor.
type historyResult struct {
	records   int // records in the partition
	perTarget int // events of each target aggregate
	batchRecs int // records per produced transaction (one batch)
	// medians over the targets and repetitions
	hist, histSerial, consec, consumer time.Duration
	scan                               time.Duration
	indexRate                          float64 // records/s of a from-scratch index build
	procWithout, procWith              float64 // processor commands/s without and with the indexer (means)
	procRuns                           string  // each pair's
	cpuWithout, cpuWith                float64 // CPU seconds of the whole process per command (means)
	cpuRatio, rateRatio                float64 // medians of the pairs' ratios (with / without)
	cpuRatios, rateRatios              []float64
}

const (
	historyTargets   = 5
	historyPerTarget = 100
	historyTxn       = 125 // events per transaction: MaxBatch 1000 over 8 partitions
)

// runHistory builds a one-partition events topic of o.HistoryEvents
// envelopes (real kcqrs.Event envelopes with the headers a processor
// writes), historyTargets of whose aggregates have historyPerTarget events
// each, spread evenly over the partition; the rest belong to other
// aggregates. Then it times History, consecutive reads and a scan.
func runHistory(ctx context.Context, o *Options, admCl *kgo.Client, adm *kadm.Client, w *workload, prod *kgo.Client, logf func(string, ...any)) (historyResult, error) {
	res := historyResult{records: o.HistoryEvents, perTarget: historyPerTarget, batchRecs: historyTxn}
	topic := o.Prefix + "history-events"
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		return res, err
	}
	reg, err := examples.Registry()
	if err != nil {
		return res, err
	}
	logf("history: writing %d events (%d aggregates with %d each spread over the partition, the rest others')", o.HistoryEvents, historyTargets, historyPerTarget)
	if err := writeHistoryTopic(ctx, o.clientOpts(), o.Prefix+"history-writer", topic, o.HistoryEvents, kgo.NoCompression()); err != nil {
		return res, err
	}

	idx, err := history.Open(filepath.Join(o.WorkDir, "history-index"))
	if err != nil {
		return res, err
	}
	defer idx.Close()
	ix, err := history.NewIndexer(history.IndexerConfig{Index: idx, Topic: topic, ClientOpts: o.clientOpts()})
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	if err := ix.CatchUp(ctx); err != nil {
		return res, err
	}
	res.indexRate = float64(ix.Stats().Records) / time.Since(t0).Seconds()
	logf("history: index built at %.0f records/s", res.indexRate)

	cl, err := kgo.NewClient(o.clientOpts()...)
	if err != nil {
		return res, err
	}
	defer cl.Close()
	// The 8 fetches in flight go over 4 clients (connections), as a
	// history.Service spreads them (ServiceConfig.FetchConns).
	var more []*kgo.Client
	for range 3 {
		c, err := kgo.NewClient(o.clientOpts()...)
		if err != nil {
			return res, err
		}
		defer c.Close()
		more = append(more, c)
	}
	readers := map[int]*history.Reader{}
	for _, conc := range []int{1, 8} {
		var fc []*kgo.Client
		if conc > 1 {
			fc = more
		}
		if readers[conc], err = history.NewReader(history.ReaderConfig{Index: idx, Client: cl, FetchClients: fc, Registry: reg, Topic: topic, Concurrency: conc}); err != nil {
			return res, err
		}
	}
	desc, err := logread.Describe(ctx, cl, topic, 0)
	if err != nil {
		return res, err
	}
	var hist, serial, consec, consumer []time.Duration
	for rep := 0; rep < 3; rep++ {
		for t := range historyTargets {
			id := "target-" + strconv.Itoa(t)
			for conc, dst := range map[int]*[]time.Duration{8: &hist, 1: &serial} {
				start := time.Now()
				evs, err := readers[conc].History(ctx, "account", id, 1, historyPerTarget)
				if err != nil {
					return res, err
				}
				*dst = append(*dst, time.Since(start))
				if len(evs) != historyPerTarget {
					return res, fmt.Errorf("history of %s: %d events, want %d", id, len(evs), historyPerTarget)
				}
			}
			// 100 consecutive records from the middle of the partition,
			// one batch per fetch, envelopes decoded as History does.
			from := int64(o.HistoryEvents/2 + t*1000)
			start := time.Now()
			var got int
			for next := from; got < historyPerTarget; {
				f, err := logread.FetchAt(ctx, cl, topic, 0, desc, next, 1)
				if err != nil {
					return res, err
				}
				for _, r := range f.Records {
					if got < historyPerTarget {
						if _, _, err := reg.DecodeEvents(r.Value); err != nil {
							return res, err
						}
						got++
					}
				}
				next = f.Next
			}
			consec = append(consec, time.Since(start))
			// The same with a franz-go consumer created for the read.
			start = time.Now()
			if err := consume100(ctx, o, topic, from, reg); err != nil {
				return res, err
			}
			consumer = append(consumer, time.Since(start))
		}
	}
	res.hist, res.histSerial, res.consec, res.consumer = medianDur(hist), medianDur(serial), medianDur(consec), medianDur(consumer)

	// The partition scan (the schema-change rebuild without an index).
	lso, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return res, err
	}
	end, _ := lso.Lookup(topic, 0)
	start := time.Now()
	found, err := scanForTarget(ctx, cl, reg, topic, end.Offset)
	if err != nil {
		return res, err
	}
	res.scan = time.Since(start)
	if found != historyPerTarget {
		return res, fmt.Errorf("scan found %d events of target-0, want %d", found, historyPerTarget)
	}
	logf("history: 100 events via the index %v (1 fetch in flight: %v), 100 consecutive records %v (new consumer: %v), partition scan %v",
		res.hist, res.histSerial, res.consec, res.consumer, res.scan)

	// Index upkeep: the processor's throughput and CPU without and with an
	// indexer of its events topic in the same process (topics created
	// first, so the indexer reads from the first event), in UpkeepPairs
	// pairs whose order alternates (without first, then with first), so a
	// drift of the machine's load cancels; each pair gives a ratio.
	var cpuRatios, rateRatios []float64
	var runs []string
	for pair := range o.UpkeepPairs {
		order := []bool{false, true}
		if pair%2 == 1 {
			order = []bool{true, false}
		}
		var rate, cpu [2]float64 // [without, with]
		for _, with := range order {
			r, c, err := upkeepRun(ctx, o, admCl, w, prod, reg, fmt.Sprintf("hist-proc-%d-%v-", pair, with), with, logf)
			if err != nil {
				return res, err
			}
			i := 0
			if with {
				i = 1
			}
			rate[i], cpu[i] = r, c
		}
		cpuRatios = append(cpuRatios, cpu[1]/cpu[0])
		rateRatios = append(rateRatios, rate[1]/rate[0])
		runs = append(runs, fmt.Sprintf("%.1f/%.1f µs, %.0f/%.0f cmds/s", cpu[1]*1e6, cpu[0]*1e6, rate[1], rate[0]))
		res.cpuWith, res.cpuWithout = res.cpuWith+cpu[1]/float64(o.UpkeepPairs), res.cpuWithout+cpu[0]/float64(o.UpkeepPairs)
		res.procWith, res.procWithout = res.procWith+rate[1]/float64(o.UpkeepPairs), res.procWithout+rate[0]/float64(o.UpkeepPairs)
	}
	res.cpuRatio, res.rateRatio = medianOf(cpuRatios), medianOf(rateRatios)
	res.cpuRatios, res.rateRatios = cpuRatios, rateRatios
	res.procRuns = strings.Join(runs, "; ")
	logf("history: processor %.0f cmds/s without the indexer, %.0f with", res.procWithout, res.procWith)
	return res, nil
}

// upkeepRun is one processor throughput run of the upkeep rows, with or
// without an indexer in the process: commands/s and the whole process's
// CPU per command.
func upkeepRun(ctx context.Context, o *Options, admCl *kgo.Client, w *workload, prod *kgo.Client, reg *topology.Registry, name string, with bool, logf func(string, ...any)) (float64, float64, error) {
	topics := topicsFor(o.Prefix + name)
	var svc *history.Service
	var err error
	if with {
		if _, err := topology.EnsureTopics(ctx, admCl, topics, o.Partitions, -1); err != nil {
			return 0, 0, err
		}
		if svc, err = history.StartService(history.ServiceConfig{StateDir: filepath.Join(o.WorkDir, name+"state"), Topic: topics.Events, ClientOpts: o.clientOpts(), Registry: reg}); err != nil {
			return 0, 0, err
		}
	}
	proc, err := startProcessor(o, topics, o.Prefix+name+"processor", "bench-h", filepath.Join(o.WorkDir, name+"proc"), func(c *topology.Config) {
		if svc != nil {
			c.History = svc.Reader()
		}
	})
	if err != nil {
		if svc != nil {
			_ = svc.Close()
		}
		return 0, 0, err
	}
	cpu0 := processCPU()
	rate, err := w.throughput(ctx, prod, topics.Commands, name, o.Commands, o.Timeout, proc.processed)
	if svc != nil {
		// Until the indexer has read what the run wrote: its work
		// counts, whenever it happens; poked, so that the process
		// does not idle in the measured window until its next round.
		svc.Indexer().Poke()
		_ = waitFor(ctx, o.Timeout, "the indexer", func() (bool, error) {
			return svc.Indexer().Stats().Indexed >= int64(o.Accounts+o.Commands), nil
		})
	}
	cpuPerCmd := (processCPU() - cpu0).Seconds() / float64(o.Commands+o.Accounts)
	_ = proc.stop()
	if svc != nil {
		st := svc.Indexer().Stats()
		_ = svc.Close()
		logf("history: the indexer had indexed %d events when the processor's timed run ended", st.Indexed)
	}
	return rate, cpuPerCmd, err
}

// writeHistoryTopic writes n event envelopes (batches compressed with
// codec; the processor's default is none) to partition 0 of topic in
// transactions of historyTxn: historyTargets aggregates ("target-0", ...)
// with historyPerTarget events each spread evenly over the partition, the
// rest of other aggregates.
func writeHistoryTopic(ctx context.Context, opts []kgo.Opt, txnID, topic string, n int, codec kgo.CompressionCodec) error {
	enc, err := envelopeEncoder()
	if err != nil {
		return err
	}
	txn, err := kgo.NewClient(append(opts, kgo.TransactionalID(txnID), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(codec))...)
	if err != nil {
		return err
	}
	defer txn.Close()
	every := n / historyPerTarget
	versions := map[string]int64{}
	for i := 0; i < n; i += historyTxn {
		if err := txn.BeginTransaction(); err != nil {
			return err
		}
		for j := i; j < min(i+historyTxn, n); j++ {
			id := "other-" + strconv.Itoa(j)
			if j%every < historyTargets && j/every < historyPerTarget {
				id = "target-" + strconv.Itoa(j%every)
			}
			versions[id]++
			v, err := enc(id, versions[id])
			if err != nil {
				return err
			}
			txn.Produce(ctx, &kgo.Record{Key: []byte(id), Value: v, Headers: []kgo.RecordHeader{
				{Key: wire.HeaderEventType, Value: []byte("MoneyDeposited")},
				{Key: wire.HeaderAggregateType, Value: []byte("account")},
				{Key: wire.HeaderVersion, Value: []byte(strconv.FormatInt(versions[id], 10))},
			}}, nil)
		}
		if err := txn.Flush(ctx); err != nil {
			return err
		}
		if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
			return err
		}
	}
	return nil
}

// consume100 reads 100 records from offset from with a franz-go consumer
// made for the read (what a tool reading one stretch of a partition does).
func consume100(ctx context.Context, o *Options, topic string, from int64, reg *topology.Registry) error {
	cl, err := kgo.NewClient(append(o.clientOpts(), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(from)}}))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	got := 0
	for got < historyPerTarget {
		fs := cl.PollRecords(ctx, historyPerTarget-got)
		if err := fs.Err0(); err != nil {
			return err
		}
		for _, r := range fs.Records() {
			if _, _, err := reg.DecodeEvents(r.Value); err != nil {
				return err
			}
			got++
		}
	}
	return nil
}

// envelopeEncoder returns a function writing a MoneyDeposited event
// envelope of account id at version v, in single-object encoding.
func envelopeEncoder() (func(id string, v int64) ([]byte, error), error) {
	env, err := schemas.LoadEnvelopes()
	if err != nil {
		return nil, err
	}
	ec, err := env.Codec("kcqrs.Event")
	if err != nil {
		return nil, err
	}
	if err := ec.Bind(reflect.TypeOf(wire.Event{})); err != nil {
		return nil, err
	}
	acc, err := schemas.LoadAccount()
	if err != nil {
		return nil, err
	}
	dc, err := acc.Codec("MoneyDeposited")
	if err != nil {
		return nil, err
	}
	return func(id string, v int64) ([]byte, error) {
		payload, err := dc.Encode(account.MoneyDeposited{Amount: 100, Balance: 100 * v})
		if err != nil {
			return nil, err
		}
		return ec.Encode(wire.Event{AggregateType: "account", AggregateID: id, Version: v, EventType: "MoneyDeposited",
			CommandID: "c-" + id + "-" + strconv.FormatInt(v, 10), TimestampMillis: time.Now().UnixMilli(), Payload: payload})
	}, nil
}

// scanForTarget is the schema-change rebuild without an index: it reads
// partition 0 of topic up to end and decodes the events of target-0,
// returning how many it found.
func scanForTarget(ctx context.Context, cl *kgo.Client, reg *topology.Registry, topic string, end int64) (int, error) {
	var found int
	_, err := logread.Read(ctx, cl, topic, 0, 0, end, logread.Options{}, func(r *kgo.Record) error {
		if string(r.Key) == "target-0" {
			if _, _, err := reg.DecodeEvents(r.Value); err != nil {
				return err
			}
			found++
		}
		return nil
	})
	return found, err
}

func medianDur(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// historyRows adds the history measurement's rows to the table.
func (r *Results) historyRows(row func(cells ...string)) {
	h := r.History
	msf := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
	x := func(a, b time.Duration) string {
		if b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2fx", float64(a)/float64(b))
	}
	row(fmt.Sprintf("history: one aggregate's %d events via the index, from a partition of %d events of other aggregates (transactions of %d, uncompressed; 8 fetches in flight over 4 connections)", h.perTarget, h.records, h.batchRecs), msf(h.hist), "", "")
	row("history: the same, one fetch in flight", msf(h.histSerial), "", "")
	row(fmt.Sprintf("%d consecutive records of that partition (warm client, one batch per fetch)", h.perTarget), msf(h.consec), "", "")
	row(fmt.Sprintf("%d consecutive records with a franz-go consumer made for the read", h.perTarget), msf(h.consumer), "", "")
	row("scan of the partition for one aggregate (the rebuild without an index)", msf(h.scan), "", "")
	row("history ratio (via index / consecutive records, warm)", "", x(h.hist, h.consec), "<= 2x")
	row("history ratio (via index / consecutive records, new consumer)", "", x(h.hist, h.consumer), "(info)")
	row("scan ratio (partition scan / via index)", "", x(h.scan, h.hist), ">= 100x")
	row("history index build from scratch (kcqrs history reindex)", fmt.Sprintf("%.0f records/s", h.indexRate), "", "")
	each := func(rs []float64) string {
		var out []string
		for _, r := range rs {
			out = append(out, fmt.Sprintf("%.3f", r))
		}
		return strings.Join(out, ", ")
	}
	row(fmt.Sprintf("index upkeep: CPU of the whole process (broker, producer, processor, indexer) per command, with / without the indexer (means; ratio: median of %d alternated pairs, each pair's in brackets)", len(h.cpuRatios)),
		fmt.Sprintf("%.1f / %.1f µs", h.cpuWith*1e6, h.cpuWithout*1e6), fmt.Sprintf("%.3f [%s]", h.cpuRatio, each(h.cpuRatios)), "<= 1.05")
	row(fmt.Sprintf("index upkeep: processor throughput with / without an in-process indexer of its events (means; ratio: median of %d alternated pairs; pairs with/without: %s)", len(h.rateRatios), h.procRuns),
		fmt.Sprintf("%.0f / %.0f cmds/s", h.procWith, h.procWithout), fmt.Sprintf("%.3f [%s]", h.rateRatio, each(h.rateRatios)), ">= 0.95")
}

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
