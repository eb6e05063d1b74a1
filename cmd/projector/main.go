// Command projector builds the read models from the events topic (goka
// groups, see package projection) and serves them over HTTP/JSON:
//
//	projector --brokers 127.0.0.1:9092 --http 127.0.0.1:8088
//	projector --version 2 --serve-versions 1,2   # rebuild beside version 1, switch when caught up
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/projection"
)

func main() {
	var cfg projection.ServiceConfig
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	flag.StringVar(&cfg.Addr, "http", "127.0.0.1:8088", "listen address of the read-only query API (localhost by default)")
	flag.StringVar(&cfg.Projection.StateDir, "state-dir", ".kcqrs/projector", "directory of the tables' and views' Pebble stores")
	flag.StringVar(&cfg.Projection.EventsTopic, "events-topic", "events", "events topic")
	flag.StringVar(&cfg.Projection.Names.Prefix, "prefix", "kcqrs-proj", "prefix of the groups and topics of the read models")
	flag.IntVar(&cfg.Projection.Names.Version, "version", 1, "version of the read models this projector builds")
	serve := flag.String("serve-versions", "", "comma-separated versions the query API answers from, oldest first; it switches to a newer one once caught up (default: --version)")
	noProject := flag.Bool("query-only", false, "serve queries only, build nothing")
	noHTTP := flag.Bool("no-http", false, "build the read models only, serve no queries")
	flag.DurationVar(&cfg.Projection.SessionTimeout, "session-timeout", 0, "consumer-group session timeout: how long a crashed projector's partitions wait before a restart or another projector takes them (default 10s)")
	replication := flag.Int("replication", 1, "replication factor of the topics the projector creates")
	verbose := flag.Bool("v", false, "debug logs (goka and sarama included)")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Projection.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Projection.Brokers = strings.Split(*brokers, ",")
	cfg.Projection.ReplicationFactor = *replication
	cfg.Project, cfg.NoHTTP = !*noProject, *noHTTP
	if *serve != "" {
		for _, v := range strings.Split(*serve, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n <= 0 {
				fatal(fmt.Errorf("--serve-versions: %q is not a version", v))
			}
			cfg.ServeVersions = append(cfg.ServeVersions, n)
		}
	}
	reg, err := examples.Registry()
	if err != nil {
		fatal(err)
	}
	cfg.Projection.Registry = reg

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	svc, err := projection.StartService(ctx, cfg)
	if err != nil {
		fatal(err)
	}
	if svc.Addr() != "" {
		cfg.Projection.Logger.Info("query API listening", "addr", "http://"+svc.Addr(), "versions", cfg.ServeVersions)
	}
	if err := svc.Wait(); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "projector:", err)
	os.Exit(1)
}
