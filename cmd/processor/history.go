package main

import (
	"log/slog"
	"net/http"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/topology"
)

// startHistory starts the history index of the events topic (--history):
// the schema-change rebuild reads through it (Config.History) and the
// endpoints serve it. Every worker indexes every partition, so any worker
// answers for any aggregate and a rebalance changes nothing for the index
// (docs/history.md weighs the cost).
func startHistory(st *settings, reg *topology.Registry, log *slog.Logger) (http.Handler, func(), error) {
	if !st.history {
		return nil, func() {}, nil
	}
	svc, err := history.StartService(history.ServiceConfig{
		StateDir:   st.cfg.StateDir,
		Topic:      st.cfg.Topics.Events,
		ClientOpts: append([]kgo.Opt{kgo.SeedBrokers(st.cfg.Brokers...)}, st.cfg.ClientOpts...),
		Registry:   reg,
		Logger:     log,
		Personal:   st.cfg.Personal,
		KeysTopic:  st.cfg.Topics.Keys,
	})
	if err != nil {
		return nil, nil, err
	}
	st.cfg.History = svc.Reader()
	return svc.Handler(), func() { _ = svc.Close() }, nil
}
