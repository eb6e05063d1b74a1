package main

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// cliPermissions are the documented permissions of the kcqrs CLI.
func cliPermissions() []topology.Permission {
	return topology.CLIPermissions(topology.Config{}, "kcqrs-proj-")
}

// securedCLI starts a broker with SASL and ACLs, a processor as the
// superuser (which creates the topics) and a dead letter, and points the
// CLI's connection settings at it as user "cli" with exactly perms.
func securedCLI(t *testing.T, perms []topology.Permission) {
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
	h.StartProcessor("w0", "")
	if rep := h.Send(client.Command{AggregateType: "nope", AggregateID: "dl-1", Type: "X", JSON: []byte(`{}`)}); rep.Status != wire.StatusInvalid {
		t.Fatalf("a command for an unknown aggregate type: %+v", rep)
	}
	t.Setenv("KCQRS_BROKERS", strings.Join(h.Brokers, ","))
	t.Setenv("KCQRS_SASL_MECHANISM", config.SASLScramSHA256)
	t.Setenv("KCQRS_SASL_USER", "cli")
	t.Setenv("KCQRS_SASL_PASSWORD", "cli-secret")
}

// TestCLIWithExactlyItsACLs: with exactly its documented permissions the
// CLI sends a command and gets its reply, and lists the dead letters; with
// one of those permissions removed, the subcommand that needs it fails
// (non-zero exit) naming the authorization error and the topic.
func TestCLIWithExactlyItsACLs(t *testing.T) {
	all := cliPermissions()
	securedCLI(t, all)
	if out, code, obj := run(t, runSend, "--id", "c1", "--type", "OpenAccount", "--data", `{"owner":"A","currency":"EUR"}`); code != exitOK || obj["status"] != string(wire.StatusAccepted) {
		t.Fatalf("send with exactly the CLI's ACLs: exit %d\n%s", code, out)
	}
	if out, code, _ := run(t, runDLQ, "list"); code != exitOK || !strings.Contains(out, "dl-1") {
		t.Fatalf("dlq list with exactly the CLI's ACLs: exit %d\n%s", code, out)
	}
}

// TestCLIWithoutOneACL: each topic permission of send and dlq removed in
// turn makes that subcommand fail, naming the topic it was refused.
func TestCLIWithoutOneACL(t *testing.T) {
	all := cliPermissions()
	for i, p := range all {
		if p.ResourceType != kmsg.ACLResourceTypeTopic || p.Prefixed {
			continue
		}
		var args []string
		var fn func([]string) error
		switch p.Resource {
		case "commands", "command_reply":
			fn, args = runSend, []string{"--id", "c2", "--type", "OpenAccount", "--data", `{"owner":"A","currency":"EUR"}`, "--timeout", "10s"}
		case "commands-dlq":
			fn, args = runDLQ, []string{"list"}
		default:
			continue // events: transfer --wait and groups, with the saga and projectors
		}
		t.Run(p.Operation.String()+" "+p.Resource, func(t *testing.T) {
			securedCLI(t, topologytest.Without(all, i))
			out, err := capture(t, func() error { return fn(args) })
			if err == nil || !strings.Contains(err.Error(), "AUTHORIZATION") || !strings.Contains(err.Error(), p.Resource) {
				t.Fatalf("without %s: %v\n%s", p, err, out)
			}
		})
	}
}
