package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// replyTopics are the topic settings of send and transfer; their variables
// are the processor's (KCQRS_COMMANDS_TOPIC, KCQRS_REPLY_TOPIC).
type replyTopics struct {
	commands, replies string
	timeout           time.Duration
}

func (t *replyTopics) bind(c *cli) {
	d := topology.Defaults().Topics
	c.Group("Topics")
	c.String(&t.commands, "commands-topic", d.Commands, "command topic")
	c.String(&t.replies, "reply-topic", d.Replies, "reply topic (read from its end, so only replies to this command are seen)")
	c.Duration(&t.timeout, "timeout", 15*time.Second, "how long to wait for the reply")
}

func runSend(args []string) (rerr error) {
	defer func() { rerr = withGrants("send", rerr) }()
	c := newCLI("send", `usage: kcqrs send --id <aggregate id> --type <command type> [--data <json>] [flags]

Sends one command (its JSON form, content-type application/json) and prints
its reply as JSON, with the wire's field names (commandId, status, version,
events, code, message, duplicate).

`+exitCodes)
	var t replyTopics
	t.bind(c)
	var aggType, id, typ, data, cmdID, expected string
	c.Group("Command")
	c.FlagsOnly()
	c.String(&aggType, "aggregate-type", "account", "aggregate type")
	c.String(&id, "id", "", "aggregate id (the record key)")
	c.String(&typ, "type", "", "command type, e.g. OpenAccount, Deposit, Withdraw, CloseAccount")
	c.String(&data, "data", "{}", `the command as JSON, e.g. '{"amount": 100}'`)
	c.String(&cmdID, "command-id", "", "command id (reuse it to retry safely; default random)")
	c.String(&expected, "expected-version", "", "expected aggregate version: a number, no_stream or exists")
	if err := c.parse(args); err != nil {
		return err
	}
	if id == "" || typ == "" {
		return c.usageError(errors.New("--id and --type are required"))
	}
	if !json.Valid([]byte(data)) {
		return c.usageError(fmt.Errorf("--data %q is not JSON", data))
	}
	rep, err := c.sendOne(t, client.Command{
		AggregateType: aggType, AggregateID: id, Type: typ, ID: cmdID,
		ExpectedVersion: expected, JSON: []byte(data),
	})
	if err != nil {
		return err
	}
	if err := printJSON(os.Stdout, rep); err != nil {
		return err
	}
	return replyExit(rep)
}

// replyExit is the exit of a reply: nil when accepted, else its status's
// code (the reply printed says the rest).
func replyExit(rep wire.Reply) error {
	if code := statusExit(rep.Status); code != exitOK {
		return &exitError{code: code}
	}
	return nil
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// sendOne sends one command with a fresh client and waits up to the
// timeout for its reply.
func (c *cli) sendOne(t replyTopics, cmd client.Command) (wire.Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	defer cancel()
	cl, err := c.client(ctx, t)
	if err != nil {
		return wire.Reply{}, err
	}
	defer cl.Close()
	return cl.Send(ctx, cmd)
}

// client connects a request/reply client with the connection's settings.
func (c *cli) client(ctx context.Context, t replyTopics) (*client.Client, error) {
	opts, err := c.clientOpts()
	if err != nil {
		return nil, err
	}
	return client.New(ctx, client.Config{Brokers: c.kafka.Brokers, CommandTopic: t.commands, ReplyTopic: t.replies, ClientOpts: opts})
}
