package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kcqrs/kcqrs/embedded"
)

func runBroker(args []string) error {
	fs := flag.NewFlagSet("broker", flag.ExitOnError)
	port := fs.Int("port", 9092, "port on 127.0.0.1")
	dataDir := fs.String("data-dir", ".kcqrs/broker", "directory the broker persists its logs to")
	_ = fs.Parse(args)
	c, err := embedded.Start(embedded.Options{Port: *port, DataDir: *dataDir})
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
