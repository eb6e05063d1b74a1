package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/shred"
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
	// Personal is the processor's master key of personal data
	// (topology.Config.Personal). When set, the service follows the keys
	// topic (topology.FollowKeys) and the endpoints show personal fields
	// as the processor's state has them: plaintext, or shred.Erased once
	// the subject is erased (docs/history.md, "Personal data").
	Personal shred.KeyWrapper
	// KeysTopic is the keys topic. Default topology.DefaultKeysTopic.
	KeysTopic string
	// FetchConns is the number of clients (so connections to each broker)
	// a History call's scattered fetches are spread over
	// (ReaderConfig.FetchClients): a broker serves one request per
	// connection at a time. Default 4; they connect on first use.
	FetchConns int
}

// Service is an Index, its Indexer running in the background, and a Reader
// with its HTTP handler.
type Service struct {
	idx     *Index
	ix      *Indexer
	r       *Reader
	cl      *kgo.Client
	more    []*kgo.Client // the reader's further fetch clients
	cancel  context.CancelFunc
	done    chan error
	closeMu sync.Once
	// keysDone is closed when the keys follower ended (nil: none).
	keysDone chan struct{}
}

// followKeys keeps ring up to date with the keys topic until ctx ends,
// starting over after an error (the topic not created yet, a broker
// away). Until the first load, a sealed field has no key: the endpoints
// answer 503, never the sealed text or a wrong value.
func followKeys(ctx context.Context, cfg ServiceConfig, topic string, ring *shred.Keyring) {
	warned := false
	for ctx.Err() == nil {
		err := topology.FollowKeys(ctx, cfg.ClientOpts, topic, cfg.Personal, ring, nil)
		if ctx.Err() != nil {
			return
		}
		if !warned {
			cfg.Logger.Warn("history: following the keys topic failed; retrying", "topic", topic, "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
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
	idx, err := OpenOrRebuild(IndexDir(cfg.StateDir, cfg.Topic), cfg.Logger)
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
	if cfg.FetchConns <= 0 {
		cfg.FetchConns = 4
	}
	var more []*kgo.Client
	closeClients := func() {
		cl.Close()
		for _, c := range more {
			c.Close()
		}
	}
	for range cfg.FetchConns - 1 {
		c, err := kgo.NewClient(cfg.ClientOpts...)
		if err != nil {
			closeClients()
			_ = idx.Close()
			return nil, fmt.Errorf("history: client: %w", err)
		}
		more = append(more, c)
	}
	var ring *shred.Keyring
	open := cfg.Registry
	if cfg.Personal != nil && cfg.Registry != nil {
		ring = shred.NewKeyring()
		if open, err = cfg.Registry.WithKeyring(ring); err != nil {
			closeClients()
			_ = idx.Close()
			return nil, fmt.Errorf("history: %w", err)
		}
	}
	r, err := NewReader(ReaderConfig{Index: idx, Client: cl, FetchClients: more, Registry: cfg.Registry, Open: open, Topic: cfg.Topic})
	if err != nil {
		closeClients()
		_ = idx.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{idx: idx, ix: ix, r: r, cl: cl, more: more, cancel: cancel, done: make(chan error, 1)}
	if ring != nil {
		keysTopic := cfg.KeysTopic
		if keysTopic == "" {
			keysTopic = topology.DefaultKeysTopic
		}
		s.keysDone = make(chan struct{})
		go func() {
			defer close(s.keysDone)
			followKeys(ctx, cfg, keysTopic, ring)
		}()
	}
	go func() {
		err := ix.Run(ctx)
		if err != nil {
			cfg.Logger.Error("history indexer stopped; reads scan the unindexed tail", "err", err)
		}
		s.done <- err
	}()
	return s, nil
}

// OpenOrRebuild opens the index in dir (StartService, kcqrs history
// reindex). The index is derived from the
// events topic only, so one Pebble cannot open (a truncated manifest or
// options file after a disk fault) is removed and started afresh: the
// indexer rebuilds it. Only when no one holds its lock: a directory in use
// by another process (two processors given one state directory) is an
// error, and is left alone.
func OpenOrRebuild(dir string, log *slog.Logger) (*Index, error) {
	idx, err := Open(dir)
	if err == nil {
		return idx, nil
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*")); len(m) == 0 {
		return nil, err // not a Pebble directory (or unreadable): not ours to remove
	}
	lock, lerr := vfs.Default.Lock(filepath.Join(dir, "LOCK"))
	if lerr != nil {
		return nil, fmt.Errorf("%w (in use by another process?)", err)
	}
	_ = lock.Close()
	log.Warn("history: the index cannot be opened; removing it to rebuild it from the events topic", "dir", dir, "err", err)
	if rerr := os.RemoveAll(dir); rerr != nil {
		return nil, errors.Join(err, rerr)
	}
	return Open(dir)
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
		if s.keysDone != nil {
			<-s.keysDone
		}
		s.cl.Close()
		for _, c := range s.more {
			c.Close()
		}
		err = errors.Join(err, s.idx.Close())
	})
	return err
}
