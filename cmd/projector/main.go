// Command projector follows the events topic (read_committed) and prints
// each event with its aggregate version, reporting version gaps and
// duplicates per aggregate. It is the seed of the read-model projectors.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/examples"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	topic := flag.String("events-topic", "events", "events topic")
	flag.Parse()
	reg, err := examples.Registry()
	if err != nil {
		fatal(err)
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(*brokers, ",")...),
		kgo.ConsumeTopics(*topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		fatal(err)
	}
	defer cl.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	versions := map[string]int64{}
	for ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		fetches.EachRecord(func(r *kgo.Record) {
			env, ev, err := reg.DecodeEvent(r.Value)
			if err != nil {
				fmt.Printf("%d/%d: undecodable event: %v\n", r.Partition, r.Offset, err)
				return
			}
			key := env.AggregateType + "/" + env.AggregateID
			switch last := versions[key]; {
			case env.Version <= last:
				fmt.Printf("duplicate: %s version %d (already at %d)\n", key, env.Version, last)
				return
			case env.Version != last+1:
				fmt.Printf("GAP: %s jumped from version %d to %d\n", key, last, env.Version)
			}
			versions[key] = env.Version
			fmt.Printf("%s v%d %s %+v\n", key, env.Version, env.EventType, ev)
		})
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "projector:", err)
	os.Exit(1)
}
