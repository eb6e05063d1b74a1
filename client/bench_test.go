package client

import (
	"context"
	"fmt"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kcqrs/kcqrs/wire"
)

// BenchmarkSendAsync is the path a command takes through the client, end to
// end: build and produce the record, wait, match and decode the reply, call
// back. The broker (kfake) and the echo processor run in the same process,
// so ns/op, B/op and allocs/op include their share; cpu-µs/op is the whole
// process's CPU (user+system) per command. Compare builds by their
// difference: the broker and the echo do the same work in both.
func BenchmarkSendAsync(b *testing.B) {
	for _, inflight := range []int{100, 1000} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			// Profiler labels tell the three apart in a -cpuprofile
			// (goroutines inherit them): go tool pprof -tagfocus who=client.
			var c *kfake.Cluster
			var err error
			pprof.Do(context.Background(), pprof.Labels("who", "broker"), func(context.Context) {
				c, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "cmds", "replies"))
			})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			pprof.Do(context.Background(), pprof.Labels("who", "echo"), func(context.Context) { echo(b, c.ListenAddrs()) })
			ctx := context.Background()
			var cl *Client
			pprof.Do(ctx, pprof.Labels("who", "client"), func(ctx context.Context) {
				cl, err = New(ctx, Config{Brokers: c.ListenAddrs(), CommandTopic: "cmds", ReplyTopic: "replies"})
			})
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			slots := make(chan struct{}, inflight)
			failed := make(chan error, 1)
			done := func(rep wire.Reply, _ Trace, err error) {
				if err == nil && rep.Status != wire.StatusAccepted {
					err = fmt.Errorf("status %s", rep.Status)
				}
				if err != nil {
					select {
					case failed <- err:
					default:
					}
				}
				<-slots
			}
			ids := make([]string, 64)
			for i := range ids {
				ids[i] = fmt.Sprintf("acct-%d", i)
			}
			payload := []byte{0xc3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 2}
			b.ReportAllocs()
			pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("who", "sender")))
			defer pprof.SetGoroutineLabels(ctx)
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				slots <- struct{}{}
				cl.SendAsync(ctx, Command{AggregateType: "account", AggregateID: ids[i%len(ids)], Type: "Deposit", ID: fmt.Sprint("c-", i), Avro: payload}, done)
			}
			for i := 0; i < inflight; i++ {
				slots <- struct{}{}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
			select {
			case err := <-failed:
				b.Fatal(err)
			default:
			}
		})
	}
}

// cpuTime is the process's user and system CPU so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
