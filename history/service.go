package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/topology"
)

// ServiceConfig configures a Service: what a processor (or the demo) runs
// to keep an index and answer from it.
type ServiceConfig struct {
	// StateDir holds the index, in StateDir/history-<Topic>. Required.
	StateDir string
	// Topic is the events topic. Default "events".
	Topic string
	// ClientOpts connect to Kafka. Required (at least kgo.SeedBrokers).
	ClientOpts []kgo.Opt
	// Registry decodes events and folds states. Required.
	Registry *topology.Registry
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Service is an Index, its Indexer running in the background, and a Reader
// with its HTTP handler.
type Service struct {
	idx     *Index
	ix      *Indexer
	r       *Reader
	cl      *kgo.Client
	cancel  context.CancelFunc
	done    chan error
	closeMu sync.Once
}

// IndexDir is where a Service keeps the index of topic under stateDir.
func IndexDir(stateDir, topic string) string {
	return filepath.Join(stateDir, "history-"+topic)
}

// StartService opens the index and starts indexing every partition of the
// events topic until Close.
func StartService(cfg ServiceConfig) (*Service, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("history: ServiceConfig.StateDir is required")
	}
	if cfg.Topic == "" {
		cfg.Topic = "events"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	idx, err := Open(IndexDir(cfg.StateDir, cfg.Topic))
	if err != nil {
		return nil, err
	}
	ix, err := NewIndexer(IndexerConfig{Index: idx, Topic: cfg.Topic, ClientOpts: cfg.ClientOpts, Logger: cfg.Logger})
	if err != nil {
		_ = idx.Close()
		return nil, err
	}
	cl, err := kgo.NewClient(cfg.ClientOpts...)
	if err != nil {
		_ = idx.Close()
		return nil, fmt.Errorf("history: client: %w", err)
	}
	r, err := NewReader(ReaderConfig{Index: idx, Client: cl, Registry: cfg.Registry, Topic: cfg.Topic})
	if err != nil {
		cl.Close()
		_ = idx.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{idx: idx, ix: ix, r: r, cl: cl, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := ix.Run(ctx)
		if err != nil {
			cfg.Logger.Error("history indexer stopped; reads scan the unindexed tail", "err", err)
		}
		s.done <- err
	}()
	return s, nil
}

// Reader answers History and StateAt (and is the processor's
// topology.HistorySource).
func (s *Service) Reader() *Reader { return s.r }

// Indexer is the running indexer.
func (s *Service) Indexer() *Indexer { return s.ix }

// Handler serves the history endpoints (see Handler).
func (s *Service) Handler() http.Handler { return Handler(s.r) }

// Close stops the indexer and closes the index.
func (s *Service) Close() error {
	var err error
	s.closeMu.Do(func() {
		s.cancel()
		err = <-s.done
		s.cl.Close()
		err = errors.Join(err, s.idx.Close())
	})
	return err
}
