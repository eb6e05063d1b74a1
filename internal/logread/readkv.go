package logread

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ReadKV is Read for a caller that needs only the keys and values of the
// committed records (a restore): read_committed always, no control
// records, and each fetch decoded by ParseCommitted instead of into a
// kgo.Record per record (about a sixth of a restore's CPU went there). The
// KV handed to fn, its Key and Value alias the fetch response and are valid
// only during the call. o.KeepControl and o.Uncommitted must be unset.
func ReadKV(ctx context.Context, cl *kgo.Client, topic string, part int32, from, until int64, o Options, fn func(*KV) error) (int64, error) {
	if o.KeepControl || o.Uncommitted {
		return from, errors.New("logread: ReadKV reads committed data records only")
	}
	o = o.withDefaults()
	if from >= until {
		return from, nil
	}
	fctx, cancel := context.WithCancel(ctx)
	chunks := make(chan kvChunk, 1)
	// Record slices go back to the fetcher once handed over: at most three
	// exist (one being read, one queued, one being filled).
	free := make(chan []KV, 3)
	go fetchKV(fctx, cl, topic, part, from, until, o, chunks, free)
	defer func() {
		cancel()
		for range chunks {
		}
	}()
	pos := from
	for c := range chunks {
		if c.err != nil {
			return pos, c.err
		}
		for i := range c.kvs {
			if r := &c.kvs[i]; r.Offset >= pos && r.Offset < until {
				if err := fn(r); err != nil {
					return pos, err
				}
			}
		}
		pos = c.next
		clear(c.kvs) // drop the references to the response
		select {
		case free <- c.kvs[:0]:
		default:
		}
	}
	if pos < until {
		err := ctx.Err()
		if err == nil {
			err = errors.New("fetcher stopped")
		}
		return pos, fmt.Errorf("logread: %s[%d] at %d of %d: %w", topic, part, pos, until, err)
	}
	return pos, nil
}

type kvChunk struct {
	kvs  []KV
	next int64
	err  error
}

func fetchKV(ctx context.Context, cl *kgo.Client, topic string, part int32, from, until int64, o Options, out chan<- kvChunk, free <-chan []KV) {
	defer close(out)
	send := func(c kvChunk) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	dec := kgo.DefaultDecompressor()
	next, err := fetchLoop(ctx, cl, topic, part, from, until, o, func(got *kmsg.FetchResponseTopicPartition, next int64) (int64, bool, error) {
		var kvs []KV
		select {
		case kvs = <-free:
		default:
		}
		kvs, at, err := ParseCommitted(got, next, dec, kvs)
		if err != nil || at <= next {
			return at, true, err
		}
		return at, send(kvChunk{kvs: kvs, next: at}), nil
	})
	if err != nil {
		send(kvChunk{next: next, err: err})
	}
}
