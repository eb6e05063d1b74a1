package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/embedded"
)

// brokerSettings binds the broker's settings; their variables are
// KCQRS_BROKER_<FLAG> so they cannot collide with a processor's.
func brokerSettings(s *config.Set) (port *int, dataDir *string, compaction *time.Duration) {
	port, dataDir, compaction = new(int), new(string), new(time.Duration)
	s.Intro(`usage: kcqrs broker [flags]

Runs the embedded Kafka-protocol broker (franz-go's kfake) on 127.0.0.1, with
its logs persisted, for local development. Not a production Kafka.`)
	s.Group("Broker")
	s.Int(port, "port", 9092, "port on 127.0.0.1")
	s.String(dataDir, "data-dir", ".kcqrs/broker", "directory the broker persists its logs to")
	s.Duration(compaction, "compaction-interval", 30*time.Second, "how often compacted topics are cleaned")
	return port, dataDir, compaction
}

func runBroker(args []string) error {
	s := config.New("broker", config.DefaultPrefix+"BROKER_")
	port, dataDir, compaction := brokerSettings(s)
	err := s.Parse(args, nil)
	if errors.Is(err, config.ErrHelp) {
		s.Usage(os.Stdout)
		return nil
	}
	if *port < 1 || *port > 65535 {
		err = errors.Join(err, fmt.Errorf("--port %d: want 1..65535", *port))
	}
	if *compaction < time.Millisecond {
		err = errors.Join(err, fmt.Errorf("--compaction-interval %v: want 1ms or more", *compaction))
	}
	if err != nil {
		return fmt.Errorf("broker: invalid configuration:\n%w", err)
	}
	c, err := embedded.Start(embedded.Options{Port: *port, DataDir: *dataDir, CompactionIntervalMs: int(compaction.Milliseconds())})
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Printf("embedded Kafka-protocol broker on %v (data in %s); Ctrl-C to stop\n", c.ListenAddrs(), *dataDir)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}
