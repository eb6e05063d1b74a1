package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
)

// followKeys loads the keys topic and follows it in the background, and
// returns the query API's opener of personal fields (docs/erasure.md). A
// wrong master key fails the start.
func followKeys(ctx context.Context, opts []kgo.Opt, st *settings, log *slog.Logger) (func(string, string, string) string, error) {
	ring := shred.NewKeyring()
	loaded := make(chan struct{})
	failed := make(chan error, 1)
	go func() {
		err := topology.FollowKeys(ctx, opts, st.keysTopic, st.masterKey, ring, func() { close(loaded) })
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Error("following the keys topic stopped: new keys and erasures no longer reach the query API", "topic", st.keysTopic, "err", err)
		}
		failed <- err
	}()
	select {
	case <-loaded:
		log.Info("keys of personal data loaded", "topic", st.keysTopic, "subjects", ring.Len())
		return topology.PersonalOpener(ring), nil
	case err := <-failed:
		return nil, err
	}
}
