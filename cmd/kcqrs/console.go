package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kcqrs/kcqrs/console"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
)

// This file is `kcqrs console`: the web console (package console).

const consoleUsage = `usage: kcqrs console [flags]

Serves a read-only web console: the topology, the workers with the
partitions they own and their lag, the consumer groups, the dead letters
and an aggregate inspector. Pages are rendered on the server (no
JavaScript). With --allow-redrive, dead letters get a re-drive button (the
same as 'kcqrs dlq redrive --execute'); without it the console writes
nothing.`

func runConsole(args []string) error {
	addr, o, err := consoleOptions(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := startConsole(addr, o)
	if err != nil {
		return err
	}
	defer srv.Close()
	mode := "read-only"
	if o.AllowRedrive {
		mode = "re-drive allowed"
	}
	fmt.Printf("console on http://%s (%s); Ctrl-C to stop\n", srv.Addr(), mode)
	<-ctx.Done()
	return nil
}

// consoleOptions reads the settings of `kcqrs console`: its listen
// address and the console's options.
func consoleOptions(args []string) (string, console.Options, error) {
	c := newCLI("console", consoleUsage)
	d := topology.Defaults()
	var addr string
	var cfg topology.Config
	var opsAddrs []string
	var allowRedrive bool
	c.Group("Console")
	c.String(&addr, "addr", "127.0.0.1:8090", "listen address of the console (loopback by default: it has no authentication)")
	c.List(&opsAddrs, "ops-addr", nil, "the workers' /metrics addresses (host:port,...), for transactions, readiness and restore progress")
	c.Bool(&allowRedrive, "allow-redrive", false, "show a re-drive button on dead letters and accept it (default: read-only)")
	c.Group("Topology")
	c.String(&cfg.Group, "group", d.Group, "the processors' consumer group")
	c.String(&cfg.Topics.Commands, "commands-topic", d.Topics.Commands, "commands topic")
	c.String(&cfg.Topics.Events, "events-topic", d.Topics.Events, "events topic")
	c.String(&cfg.Topics.Changelog, "changelog-topic", d.Topics.Changelog, "changelog topic (the aggregate inspector reads it)")
	c.String(&cfg.Topics.Replies, "replies-topic", d.Topics.Replies, "default replies topic")
	c.String(&cfg.Topics.DeadLetters, "dlq-topic", d.Topics.DeadLetters, "dead-letter topic")
	if err := c.parse(args); err != nil {
		return "", console.Options{}, err
	}
	opts, err := c.clientOpts()
	if err != nil {
		return "", console.Options{}, err
	}
	reg, err := examples.Registry()
	if err != nil {
		return "", console.Options{}, err
	}
	return addr, console.Options{ClientOpts: opts, Processor: cfg, Registry: reg, OpsAddrs: opsAddrs, AllowRedrive: allowRedrive,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}, nil
}

// consoleServer is a running console.
type consoleServer struct {
	ln   net.Listener
	srv  *http.Server
	cons *console.Console
}

func (s *consoleServer) Addr() net.Addr { return s.ln.Addr() }

func (s *consoleServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	s.cons.Close()
}

// startConsole serves a console on addr (kcqrs console and kcqrs demo).
func startConsole(addr string, o console.Options) (*consoleServer, error) {
	cons, err := console.New(o)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		cons.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	s := &consoleServer{ln: ln, cons: cons, srv: &http.Server{Handler: cons.Handler(), ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "console:", err)
		}
	}()
	return s, nil
}
