package topology_test

import (
	"os"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/topology"
)

// aclDocs are docs/operations.md's ACL sections, made from the permission lists:
// the table of every binary's permissions and the kafka-acls.sh commands
// granting them.
func aclDocs() map[string]string {
	proc := topology.ProcessorPermissions(topology.Config{InstanceID: "<instance-id>"})
	saga := topology.SagaPermissions(topology.SagaNames{Events: "events", Commands: "commands", State: "kcqrs-transfers-state", Group: "kcqrs-transfers", InstanceID: "<instance-id>"})
	proj := topology.ProjectorPermissions("events", "kcqrs-proj-")
	cli := topology.CLIPermissions(topology.Config{}, "kcqrs-proj-")
	var cmds strings.Builder
	cmds.WriteString("```sh\n# processor workers (with the transfer saga: both run in one process, as one principal)\n")
	for _, c := range topology.ACLCommands("$BROKER", "User:kcqrs-processor", append(proc, saga...)) {
		cmds.WriteString(c + "\n")
	}
	cmds.WriteString("# projector\n")
	for _, c := range topology.ACLCommands("$BROKER", "User:kcqrs-projector", proj) {
		cmds.WriteString(c + "\n")
	}
	cmds.WriteString("# kcqrs command-line tool\n")
	for _, c := range topology.ACLCommands("$BROKER", "User:kcqrs-cli", cli) {
		cmds.WriteString(c + "\n")
	}
	cmds.WriteString("```\n")
	return map[string]string{
		"acl table":    topology.ACLMarkdown([]string{"processor", "saga", "projector", "kcqrs CLI"}, [][]topology.Permission{proc, saga, proj, cli}),
		"acl commands": cmds.String(),
	}
}

// TestACLsInREADME: docs/operations.md's ACL table and kafka-acls.sh commands are
// the permission lists the start-up checks use (go test ./topology -run
// TestACLsInREADME -update rewrites them).
func TestACLsInREADME(t *testing.T) {
	raw, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	for name, want := range aclDocs() {
		begin, end := "<!-- BEGIN "+name+" -->\n", "<!-- END "+name+" -->"
		i, j := strings.Index(readme, begin), strings.Index(readme, end)
		if i < 0 || j < i {
			t.Fatalf("docs/operations.md lacks the markers %q ... %q", strings.TrimSpace(begin), end)
		}
		if readme[i+len(begin):j] == want {
			continue
		}
		if *update {
			readme = readme[:i+len(begin)] + want + readme[j:]
			continue
		}
		t.Errorf("docs/operations.md section %q is stale; run go test ./topology -run TestACLsInREADME -update\nwant:\n%s", name, want)
	}
	if *update {
		if err := os.WriteFile("../docs/operations.md", []byte(readme), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
