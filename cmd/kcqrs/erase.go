package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
)

// runErase plans (and with --execute sends) the erasure of one aggregate's
// personal data: `kcqrs erase <type> <id>` (docs/erasure.md).
func runErase(args []string) (rerr error) {
	defer func() { rerr = withGrants("erase", rerr) }()
	c := newCLI("erase", `usage: kcqrs erase <aggregate type> <aggregate id> [--execute] [flags]
       kcqrs erase [--execute] [flags] -- <aggregate type> <aggregate id>   (an id starting with '-')

Erases the personal data of one aggregate by crypto-shredding (docs/erasure.md):
the processor replaces its data key in the keys topic with an erasure marker,
replaces its snapshot by one without personal data (version, balance and transfers
kept, personal fields "[erased]") and rejects every later command on it (code
"erased") except the legs of transfers that were running, so that they end.
Without --execute it only shows what is there and what would be done.

`+exitCodes)
	var t replyTopics
	t.bind(c)
	var keysTopic, changelog, events, cmdID, masterKeyFile string
	var execute bool
	d := topology.Defaults().Topics
	c.String(&keysTopic, "keys-topic", "kcqrs-keys", "the keys topic of personal data")
	c.String(&changelog, "changelog-topic", d.Changelog, "the snapshot changelog")
	c.String(&events, "events-topic", d.Events, "the events topic")
	c.String(&cmdID, "command-id", "", "command id of the erasure (reuse it to retry; default random)")
	c.String(&masterKeyFile, "master-key-file", "", "the processor's master key, which --execute needs to make the erasure token (default: the KCQRS_MASTER_KEY variable)")
	c.Bool(new(bool), "dry-run", true, "show the plan only (the default)")
	c.Bool(&execute, "execute", false, "send the erasure")
	// Two positional arguments first, then flags (or after "--": an id
	// may start with '-').
	pos, args := splitPositional(args, 2)
	if err := c.parse(args); err != nil {
		return err
	}
	if len(pos) != 2 || pos[0] == "" || pos[1] == "" {
		return c.usageError(errors.New("give the aggregate type and id: kcqrs erase <type> <id>"))
	}
	aggType, id := pos[0], pos[1]
	subject := aggType + "/" + id

	cl, adm, err := c.admin()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	plan, err := planErase(ctx, cl, adm, t.commands, keysTopic, changelog, events, aggType, id)
	if err != nil {
		return err
	}
	fmt.Print(plan)
	if !execute {
		fmt.Println("\nDry run: nothing was sent. Run again with --execute to erase " + subject + ".")
		return nil
	}
	// Only a holder of the master key can erase: the command carries a
	// token sealed with it (shred.EraseToken).
	mk, err := shred.LoadMasterKey(masterKeyFile)
	if err != nil {
		return c.usageError(fmt.Errorf("--execute needs the processor's master key: %w", err))
	}
	token, err := shred.EraseToken(mk, subject)
	if err != nil {
		return err
	}
	rep, err := c.sendOne(t, client.Command{AggregateType: aggType, AggregateID: id, Type: topology.EraseCommandType, ID: cmdID, Avro: token})
	if err != nil {
		return err
	}
	if err := printJSON(os.Stdout, rep); err != nil {
		return err
	}
	return replyExit(rep)
}

// planErase describes what the erasure of aggType/id finds and will do.
func planErase(ctx context.Context, cl *kgo.Client, adm *kadm.Client, commands, keysTopic, changelog, events, aggType, id string) (string, error) {
	subject := aggType + "/" + id
	meta, err := adm.ListTopics(ctx, commands, keysTopic)
	if err != nil {
		return "", err
	}
	cmdT, ok := meta[commands]
	if !ok || cmdT.Err != nil {
		return "", fmt.Errorf("erase: topic %s: not found", commands)
	}
	part := topology.PartitionFor([]byte(id), int32(len(cmdT.Partitions)))
	var b strings.Builder
	fmt.Fprintf(&b, "aggregate       %s (partition %d)\n", subject, part)
	if kt, ok := meta[keysTopic]; !ok || kt.Err != nil {
		fmt.Fprintf(&b, "keys topic      %s does not exist: the processor runs without personal data (--master-key-file); erasure will be refused\n", keysTopic)
		return b.String(), nil
	}
	var key []byte
	found := false
	if err := readKey(ctx, cl, adm, keysTopic, part, subject, func(v []byte) {
		if !shred.IsErasedMarker(key) { // erasure is irreversible: nothing after the marker revives it (as in the processor)
			key, found = v, true
		}
	}); err != nil {
		return "", err
	}
	switch {
	case !found || key == nil:
		fmt.Fprintf(&b, "data key        none (the aggregate has no personal data yet)\n")
	case shred.IsErasedMarker(key):
		fmt.Fprintf(&b, "data key        already erased\n")
	default:
		fmt.Fprintf(&b, "data key        present (%d bytes, wrapped)\n", len(key))
	}
	var snap []byte
	hasSnap := false
	if err := readKey(ctx, cl, adm, changelog, part, subject, func(v []byte) { snap, hasSnap = v, v != nil }); err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "snapshot        %s\n", map[bool]string{true: fmt.Sprintf("present (%d bytes)", len(snap)), false: "none"}[hasSnap])
	if hasSnap {
		if warn := pendingTransfers(snap); warn != "" {
			fmt.Fprintf(&b, "WARNING         %s\n", warn)
		}
	}
	n := 0
	if err := readKey(ctx, cl, adm, events, part, id, func([]byte) { n++ }); err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "events          %d (kept: they still fold; their personal fields will read %q)\n", n, shred.Erased)
	fmt.Fprintf(&b, "\n--execute will: replace the data key in %s[%d] with the erasure marker, replace the snapshot in %s[%d] by one without personal data,\n"+
		"and make the processor reject every later command on %s (code %q). Not undoable.\n"+
		"Compaction of %s removes the wrapped key from the log; see docs/erasure.md for the commands topic, dead letters and replies.\n",
		keysTopic, part, changelog, part, subject, topology.CodeErased, keysTopic)
	return b.String(), nil
}

// readKey hands fn the value of every committed record of topic[part] whose
// key is key, oldest first.
func readKey(ctx context.Context, cl *kgo.Client, adm *kadm.Client, topic string, part int32, key string, fn func([]byte)) error {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return err
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return err
	}
	s, _ := starts.Lookup(topic, part)
	e, ok := ends.Lookup(topic, part)
	if !ok || e.Offset <= s.Offset {
		return nil
	}
	_, err = logread.Read(ctx, cl, topic, part, s.Offset, e.Offset, logread.Options{}, func(r *kgo.Record) error {
		if string(r.Key) == key {
			fn(r.Value)
		}
		return nil
	})
	return err
}

// pendingTransfers warns about an account snapshot with transfers in flight:
// the saga's legs to an erased account are rejected ("erased") and re-driven
// without end, so such a transfer would stay pending (docs/erasure.md).
func pendingTransfers(snap []byte) string {
	reg, err := examples.Registry()
	if err != nil {
		return ""
	}
	_, st, err := reg.DecodeSnapshot(snap)
	if err != nil {
		return ""
	}
	a, ok := st.(account.Account)
	if !ok || len(a.Pending) == 0 {
		return ""
	}
	return fmt.Sprintf("%d outgoing transfer(s) in flight: they still end after the erasure (a refund puts the money back on this erased account)", len(a.Pending))
}
