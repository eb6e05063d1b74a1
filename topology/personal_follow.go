package topology

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/shred"
)

// LoadKeys reads the keys topic (every partition, read_committed, up to its
// last stable offsets) into ring and returns the offsets it reached: how a
// reader that is not a processor (a query server, a tool) gets the keys of
// personal data. A key wrapped by another master key is a
// *shred.WrongMasterKeyError.
func LoadKeys(ctx context.Context, opts []kgo.Opt, topic string, w shred.KeyWrapper, ring *shred.Keyring) (map[int32]int64, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("topology: keys topic %s: %w", topic, err)
	}
	stable, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = stable.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("topology: keys topic %s: %w", topic, err)
	}
	reached := map[int32]int64{}
	for part, end := range stable[topic] {
		from := int64(0)
		if so, ok := starts.Lookup(topic, part); ok {
			from = so.Offset
		}
		next := from
		if end.Offset > from {
			next, err = logread.Read(ctx, cl, topic, part, from, end.Offset, logread.Options{}, func(r *kgo.Record) error {
				return applyKeyRecord(w, ring, r, slog.Default())
			})
			if err != nil {
				return nil, fmt.Errorf("topology: keys topic %s[%d]: %w", topic, part, err)
			}
		}
		reached[part] = next
	}
	return reached, nil
}

// FollowKeys loads the keys topic into ring (LoadKeys), calls loaded, then
// applies every later record until ctx ends: new keys and erasures reach the
// ring within a fetch. It returns ctx's error, or the first record it cannot
// apply (a key of another master key).
func FollowKeys(ctx context.Context, opts []kgo.Opt, topic string, w shred.KeyWrapper, ring *shred.Keyring, loaded func()) error {
	reached, err := LoadKeys(ctx, opts, topic, w, ring)
	if err != nil {
		return err
	}
	if loaded != nil {
		loaded()
	}
	offsets := map[int32]kgo.Offset{}
	for part, o := range reached {
		offsets[part] = kgo.NewOffset().At(o)
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, opts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var aerr error
		fs.EachRecord(func(r *kgo.Record) {
			if err := applyKeyRecord(w, ring, r, slog.Default()); err != nil && aerr == nil {
				aerr = err
			}
		})
		if aerr != nil {
			return aerr
		}
	}
}

// PersonalOpener returns a ServerConfig.OpenPersonal of package projection
// over ring: a sealed value opens to its plaintext, to shred.Erased for an
// erased subject, and to "[unreadable]" when it cannot be opened (a key not
// loaded yet); unsealed text is returned as it is.
func PersonalOpener(ring *shred.Keyring) func(aggregateType, aggregateID, value string) string {
	return func(aggregateType, aggregateID, value string) string {
		pt, err := ring.Open(subjectOf(aggregateType, aggregateID), value)
		if err != nil && !errors.Is(err, shred.ErrErased) {
			return "[unreadable]"
		}
		return pt
	}
}
