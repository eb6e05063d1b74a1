package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/wire"
)

func runSend(args []string) error {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	aggType := fs.String("aggregate-type", "account", "aggregate type")
	id := fs.String("id", "", "aggregate id (the record key)")
	typ := fs.String("type", "", "command type, e.g. OpenAccount, Deposit, Withdraw, CloseAccount")
	data := fs.String("data", "{}", "the command as JSON, e.g. '{\"amount\": 100}'")
	cmdID := fs.String("command-id", "", "command id (reuse it to retry safely; default random)")
	expected := fs.String("expected-version", "", "expected aggregate version: a number, no_stream or exists")
	timeout := fs.Duration("timeout", 15*time.Second, "how long to wait for the reply")
	commands := fs.String("commands-topic", "commands", "command topic")
	replies := fs.String("reply-topic", "command_reply", "reply topic")
	_ = fs.Parse(args)
	if *id == "" || *typ == "" {
		fs.Usage()
		return errors.New("send: --id and --type are required")
	}
	rep, err := sendOne(client.Config{Brokers: strings.Split(*brokers, ","), CommandTopic: *commands, ReplyTopic: *replies}, *timeout, client.Command{
		AggregateType: *aggType, AggregateID: *id, Type: *typ, ID: *cmdID,
		ExpectedVersion: *expected, JSON: []byte(*data),
	})
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Println(string(out))
	return nil
}

// sendOne sends one command with a fresh client and waits up to timeout for
// its reply.
func sendOne(cfg client.Config, timeout time.Duration, cmd client.Command) (wire.Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cl, err := client.New(ctx, cfg)
	if err != nil {
		return wire.Reply{}, err
	}
	defer cl.Close()
	return cl.Send(ctx, cmd)
}
