package topology

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/schemas"
)

// Schema-registry lookups happen before Begin. With Config.SchemaRegistryURLs
// set, writing an event or a snapshot needs the registry id of the envelope
// schema, and reading a command in the Confluent wire format needs the
// schema of its id. Both are cached forever once known, but the first
// lookup of each is a call to the registry, which may be slow or down: made
// inside the open transaction it could outlast the transaction timeout and
// get the producer fenced. So the run loop prepares them, as it does reply
// topics (replyroute.go): the envelope ids and the ids of the polled
// commands are looked up before Begin, each call bounded by
// schemaRegistryTimeout. Inside the transaction only the records of a
// further poll may still need a lookup, bounded by schemaRegistryTxnTimeout,
// as is any unexpected miss (a snapshot in the store written with a schema
// id this process never saw).

// schemaRegistryTxnTimeout bounds a registry call made inside a
// transaction: far below any transaction timeout (at least 1s, default
// 10s), so that a slow registry costs an encode error (the command is
// answered INTERNAL_ERROR) or an undecodable command, never the producer.
const schemaRegistryTxnTimeout = 2 * time.Second

// prepareSchemas registers the envelope schemas the processor writes and
// looks up the schema ids of the fetched commands that are not known yet.
// within bounds each registry call. It reports the first failure; the
// caller goes on regardless (the transaction then retries a bounded lookup
// and answers what it cannot encode or decode).
func (r *Registry) prepareSchemas(ctx context.Context, fetches kgo.Fetches, within time.Duration) error {
	if r.confluent == nil {
		return nil
	}
	call := func(f func(context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		return f(cctx)
	}
	first := call(func(ctx context.Context) error {
		return r.confluent.Register(ctx, r.event.Fingerprint(), r.snapshot.Fingerprint())
	})
	seen := map[string]bool{}
	fetches.EachRecord(func(rec *kgo.Record) {
		if !schemas.IsConfluent(rec.Value) || r.confluent.Known(rec.Value) || len(seen) >= maxSchemaLookupsPerPoll {
			return
		}
		id := string(rec.Value[1:5])
		if seen[id] {
			return
		}
		seen[id] = true
		if err := call(func(ctx context.Context) error {
			_, err := r.confluent.ToSingleObject(ctx, rec.Value)
			return err
		}); err != nil && first == nil {
			first = err
		}
	})
	return first
}

// maxSchemaLookupsPerPoll bounds the unknown schema ids looked up for one
// poll: a client writing commands with random ids must not make a worker
// spend a lookup timeout on each (the rest are decided, bounded, when
// decoded).
const maxSchemaLookupsPerPoll = 8

// prepareSchemas is Registry.prepareSchemas for the polled records, with a
// warning when the registry did not answer.
func (p *Processor) prepareSchemas(ctx context.Context, fetches kgo.Fetches, inTxn bool) {
	within := schemaRegistryTimeout
	if inTxn {
		within = schemaRegistryTxnTimeout
	}
	if err := p.reg.prepareSchemas(ctx, fetches, within); err != nil {
		p.log.Warn("schema registry lookup before the transaction failed; the transaction retries it, bounded", "err", err, "in_transaction", inTxn)
	}
}
