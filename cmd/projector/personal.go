package main

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/projection"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
)

// followKeys loads the keys topic and follows it in the background, and
// returns the query API's opener of personal fields (docs/erasure.md). A
// wrong master key fails the start. If following stops later, erasures no
// longer reach the keyring: the opener then fails closed (every sealed value
// reads "[unreadable]") rather than go on showing the plaintext of subjects
// erased since. It also returns the blind owners index over the keys
// (projection.Personal), so that owners can be looked up although the
// tables hold them sealed.
func followKeys(ctx context.Context, opts []kgo.Opt, st *settings, log *slog.Logger) (func(string, string, string) string, *projection.Personal, error) {
	ring := shred.NewKeyring()
	var personal *projection.Personal
	if idx, err := shred.NewBlindIndex(st.masterKey, projection.OwnerIndexPurpose); err == nil {
		personal = &projection.Personal{Keys: ring, Owners: idx}
	} else {
		log.Warn("no blind owners index: owners of sealed accounts cannot be looked up", "err", err)
	}
	loaded := make(chan struct{})
	failed := make(chan error, 1)
	var stopped atomic.Bool
	go func() {
		err := topology.FollowKeys(ctx, opts, st.keysTopic, st.masterKey, ring, func() { close(loaded) })
		stopped.Store(true)
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Error("following the keys topic stopped: erasures no longer reach the query API, which shows personal fields as [unreadable] until a restart", "topic", st.keysTopic, "err", err)
		}
		failed <- err
	}()
	select {
	case <-loaded:
		log.Info("keys of personal data loaded", "topic", st.keysTopic, "subjects", ring.Len())
		open := topology.PersonalOpener(ring)
		return func(aggregateType, aggregateID, value string) string {
			if stopped.Load() && shred.IsSealed(value) {
				return "[unreadable]"
			}
			return open(aggregateType, aggregateID, value)
		}, personal, nil
	case err := <-failed:
		return nil, nil, err
	}
}
