package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/projection"
	"github.com/kcqrs/kcqrs/saga"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// cliPermissions are the documented permissions of the kcqrs CLI.
func cliPermissions() []topology.Permission {
	return topology.CLIPermissions(topology.Config{}, "kcqrs-proj-")
}

// securedCLI starts a broker with SASL and ACLs, a processor and a saga as
// the superuser (which create the topics), a dead letter, an account with
// money and the groups of read models v1 caught up, and points the CLI's
// connection settings at it as user "cli" with exactly perms. It returns an
// admin client, to change the CLI's ACLs.
func securedCLI(t *testing.T, perms []topology.Permission) *kadm.Client {
	t.Helper()
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	admin := config.Kafka{Brokers: []string{"127.0.0.1:1"}, SASLMechanism: config.SASLScramSHA256, SASLUser: "admin", SASLPassword: "admin-secret"}
	adminOpts, err := admin.Opts()
	if err != nil {
		t.Fatal(err)
	}
	h := topologytest.NewWithOptions(t, reg, topologytest.Options{Partitions: 2,
		BrokerOpts: []kfake.Opt{kfake.EnableSASL(),
			kfake.Superuser(config.SASLScramSHA256, "admin", "admin-secret"),
			kfake.User(config.SASLScramSHA256, "cli", "cli-secret", topologytest.ACLs(perms)...),
			kfake.EnableACLs()},
		ClientOpts: adminOpts[1:]})
	h.Base.InternalCommands, h.Base.CommandSigningKey = saga.InternalCommands(), []byte("acl-test-key")
	h.StartProcessor("w0", "")
	if rep := h.Send(client.Command{AggregateType: "nope", AggregateID: "dl-1", Type: "X", JSON: []byte(`{}`)}); rep.Status != wire.StatusInvalid {
		t.Fatalf("a command for an unknown aggregate type: %+v", rep)
	}
	for _, c := range []client.Command{
		{AggregateType: "account", AggregateID: "src", Type: "OpenAccount", JSON: []byte(`{"owner":"S","currency":"EUR"}`)},
		{AggregateType: "account", AggregateID: "src", Type: "Deposit", JSON: []byte(`{"amount":1000}`)},
		{AggregateType: "account", AggregateID: "dst", Type: "OpenAccount", JSON: []byte(`{"owner":"D","currency":"EUR"}`)},
	} {
		if rep := h.Send(c); rep.Status != wire.StatusAccepted {
			t.Fatalf("%+v: %+v", c, rep)
		}
	}
	sg, err := saga.New(saga.Config{Brokers: h.Brokers, InstanceID: "s0", SigningKey: h.Base.CommandSigningKey, Logger: h.Base.Logger, ClientOpts: adminOpts[1:]}, reg)
	if err != nil {
		t.Fatal(err)
	}
	topologytest.RunUntilEnd(t, "saga", sg.Run)

	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(h.Brokers...)}, adminOpts[1:]...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	catchUp(t, adm)
	// The keys topic of personal data, as a processor with a master key
	// makes it (co-partitioned with commands): erase reads it.
	if _, err := adm.CreateTopic(context.Background(), 2, -1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topology.DefaultKeysTopic); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KCQRS_BROKERS", strings.Join(h.Brokers, ","))
	t.Setenv("KCQRS_SASL_MECHANISM", config.SASLScramSHA256)
	t.Setenv("KCQRS_SASL_USER", "cli")
	t.Setenv("KCQRS_SASL_PASSWORD", "cli-secret")
	return adm
}

// catchUp commits the groups of read models v1 at the end of events, as if
// their projector had read every event (for groups, reset and rebuild).
func catchUp(t *testing.T, adm *kadm.Client) {
	t.Helper()
	ctx := context.Background()
	n := projection.Names{Prefix: "kcqrs-proj", Version: 1}
	inputs := map[string]string{
		string(n.AccountsGroup()): "events",
		string(n.OwnersGroup()):   string(n.ByOwnerTopic()),
		string(n.TotalsGroup()):   string(n.ByCurrencyTopic()),
	}
	for g, topic := range inputs {
		if topic != "events" {
			if _, err := adm.CreateTopic(ctx, 1, -1, nil, topic); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				t.Fatal(err)
			}
		}
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if err := adm.CommitAllOffsets(ctx, g, ends.Offsets()); err != nil {
			t.Fatal(err)
		}
	}
}

// cliCase is a subcommand that talks to Kafka, with arguments that make it
// end, and what it prints when it worked. Its name is how the Why of a
// permission (topology.CLIPermissions, "name, name: reason") names it.
type cliCase struct {
	name string
	fn   func([]string) error
	args []string
	want string
}

func cliCases() []cliCase {
	return []cliCase{
		{"send", runSend, []string{"--id", "c1", "--type", "OpenAccount", "--data", `{"owner":"A","currency":"EUR"}`, "--timeout", "15s"}, `"status": "ACCEPTED"`},
		{"transfer", runTransfer, []string{"--from", "src", "--to", "dst", "--amount", "1", "--timeout", "15s"}, `"status": "ACCEPTED"`},
		{"transfer --wait", runTransfer, []string{"--from", "src", "--to", "dst", "--amount", "1", "--wait", "--timeout", "30s"}, `"outcome": "completed"`},
		{"transfers", runTransfers, []string{"--timeout", "15s"}, "pending transfer(s)"},
		{"dlq list", runDLQ, []string{"list"}, "dl-1"},
		{"dlq show", runDLQ, []string{"show", "--at", "0:0"}, "dl-1"},
		{"dlq redrive", runDLQ, []string{"redrive", "--all"}, "dl-1"},
		{"groups", runGroups, nil, "kcqrs-proj"},
		{"reset", runReset, []string{"--to", "earliest", "--state-dir", os.TempDir() + "/kcqrs-acl-test-none", "--version", "1"}, "kcqrs-proj"},
		{"rebuild", runRebuild, []string{"--version", "1"}, "caught up"},
		{"erase", runErase, []string{"account", "src"}, "Dry run"},
	}
}

// runCase runs c with a deadline: a subcommand that waits forever on a
// refusal is a failure too.
func runCase(t *testing.T, c cliCase) (string, error) {
	t.Helper()
	type res struct {
		out string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		out, err := capture(t, func() error { return c.fn(c.args) })
		ch <- res{out, err}
	}()
	select {
	case r := <-ch:
		return r.out, r.err
	case <-time.After(90 * time.Second):
		t.Fatalf("%s did not end within 90s", c.name)
		return "", nil
	}
}

// TestCLIWithExactlyItsACLs: with exactly its documented permissions every
// subcommand that talks to Kafka works; every one of those permissions is
// used by a subcommand. Then, on the same cluster, each permission removed
// in turn makes every subcommand that needs it fail with an error naming
// the resource and the kafka-acls.sh grant (TestCLIWithoutOneACL's part).
func TestCLIWithExactlyItsACLs(t *testing.T) {
	all := cliPermissions()
	adm := securedCLI(t, all)
	cases := cliCases()
	for _, c := range cases {
		if c.name == "rebuild" {
			catchUp(t, adm) // the commands before added events
		}
		out, err := runCase(t, c)
		if err != nil || !strings.Contains(out, c.want) {
			t.Errorf("%s with exactly the CLI's ACLs: %v\n%s", c.name, err, out)
		}
		if testing.Verbose() {
			t.Logf("%s:\n%s", c.name, out)
		}
	}
	// Every subcommand a Why names is run here, but for the variants that
	// change things (--execute), which this test leaves alone.
	for _, p := range all {
		names, _, _ := strings.Cut(p.Why, ":")
		for _, n := range strings.Split(names, ",") {
			n = strings.TrimSpace(n)
			known := strings.HasSuffix(n, " --execute")
			for _, c := range cases {
				known = known || c.name == n
			}
			if !known {
				t.Errorf("%s: its Why names %q, which this test does not run", p, n)
			}
		}
	}
	if t.Failed() {
		return
	}
	t.Run("WithoutOneACL", func(t *testing.T) { withoutOneACL(t, adm, all, cases) })
}

func withoutOneACL(t *testing.T, adm *kadm.Client, all []topology.Permission, cases []cliCase) {
	ctx := context.Background()
	for _, p := range all {
		acl := topologytest.ACLs([]topology.Permission{p})[0]
		b := kadm.NewACLs().Allow("User:cli").AllowHosts().Operations(p.Operation)
		pattern := kadm.ACLPatternLiteral
		if p.Prefixed {
			pattern = kadm.ACLPatternPrefixed
		}
		b = b.ResourcePatternType(pattern)
		switch p.ResourceType {
		case kmsg.ACLResourceTypeTopic:
			b = b.Topics(acl.Name)
		case kmsg.ACLResourceTypeGroup:
			b = b.Groups(acl.Name)
		default:
			t.Fatalf("%s: no builder for this resource type", p)
		}
		t.Run(fmt.Sprintf("%s %s", p.Operation, p.Resource), func(t *testing.T) {
			if _, err := adm.DeleteACLs(ctx, b); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if _, err := adm.CreateACLs(ctx, b); err != nil {
					t.Fatal(err)
				}
			}()
			for _, c := range cases {
				if !usedBy(p, c.name) || impliedByOther(all, p) {
					continue
				}
				out, err := runCase(t, c)
				if testing.Verbose() {
					t.Logf("%s: %v", c.name, err)
				}
				if err == nil || !strings.Contains(err.Error(), "AUTHORIZATION") || !strings.Contains(err.Error(), p.Resource) || !strings.Contains(err.Error(), p.Command("<broker>", "User:<user>")) {
					t.Errorf("%s without %s: want an authorization error naming %q and its grant, got %v\n%s", c.name, p, p.Resource, err, out)
				}
			}
		})
	}
}

// impliedByOther reports whether p is a Describe that another of all grants
// too (Kafka implies Describe with Read, Write, Delete and Alter): removing
// it alone refuses nothing.
func impliedByOther(all []topology.Permission, p topology.Permission) bool {
	if p.Operation != kmsg.ACLOperationDescribe {
		return false
	}
	for _, o := range all {
		if o != p && o.ResourceType == p.ResourceType && o.Resource == p.Resource && o.Prefixed == p.Prefixed {
			switch o.Operation {
			case kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationDelete, kmsg.ACLOperationAlter:
				return true
			}
		}
	}
	return false
}
