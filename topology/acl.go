package topology

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Permission is one Kafka ACL a kcqrs binary needs. The lists of
// ProcessorPermissions, SagaPermissions, ProjectorPermissions and
// CLIPermissions are the one source of truth: the start-up checks, the
// README's table and the kafka-acls.sh commands (ACLCommands) are made from
// them.
type Permission struct {
	Operation    kmsg.ACLOperation    // Read, Write, Create, ...
	ResourceType kmsg.ACLResourceType // Topic, Group, TransactionalId, Cluster
	Resource     string
	Why          string
	// Prefixed: the ACL is for every resource whose name starts with
	// Resource (kafka-acls.sh --resource-pattern-type prefixed).
	Prefixed bool
	// ToCreate: needed only while the resource is missing (Create); the
	// start-up check does not ask for it, the creation reports it.
	ToCreate bool
}

func (p Permission) String() string {
	name := fmt.Sprintf("%q", p.Resource)
	if p.Prefixed {
		name = fmt.Sprintf("%q (prefixed)", p.Resource+"*")
	}
	return fmt.Sprintf("%s on %s %s (%s)", p.Operation, resourceName(p.ResourceType), name, p.Why)
}

// Command is the kafka-acls.sh command that grants p to principal
// (User:<name>) through bootstrap.
func (p Permission) Command(bootstrap, principal string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kafka-acls.sh --bootstrap-server %s --add --allow-principal %s --operation %s", bootstrap, principal, aclsOperation(p.Operation))
	switch p.ResourceType {
	case kmsg.ACLResourceTypeTopic:
		fmt.Fprintf(&b, " --topic %s", p.Resource)
	case kmsg.ACLResourceTypeGroup:
		fmt.Fprintf(&b, " --group %s", p.Resource)
	case kmsg.ACLResourceTypeTransactionalId:
		fmt.Fprintf(&b, " --transactional-id %s", p.Resource)
	default:
		b.WriteString(" --cluster")
	}
	if p.Prefixed {
		b.WriteString(" --resource-pattern-type prefixed")
	}
	return b.String()
}

// ACLCommands are the kafka-acls.sh commands granting perms to principal,
// each ACL once.
func ACLCommands(bootstrap, principal string, perms []Permission) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range perms {
		c := p.Command(bootstrap, principal)
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// ACLMarkdown is the Markdown table of the permissions of each binary, in
// the order given (the README's table is generated from it).
func ACLMarkdown(binaries []string, perms [][]Permission) string {
	var b strings.Builder
	b.WriteString("| Binary | Operation | Resource | Why |\n|---|---|---|---|\n")
	for i, bin := range binaries {
		for _, p := range perms[i] {
			res := resourceName(p.ResourceType) + " `" + p.Resource + "`"
			if p.Prefixed {
				res = resourceName(p.ResourceType) + " prefix `" + p.Resource + "`"
			}
			why := p.Why
			if p.ToCreate {
				why += " (only while it is missing)"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", bin, aclsOperation(p.Operation), res, why)
		}
	}
	return b.String()
}

// resourceName is a resource type as Kafka's documentation spells it.
func resourceName(rt kmsg.ACLResourceType) string {
	switch rt {
	case kmsg.ACLResourceTypeTopic:
		return "Topic"
	case kmsg.ACLResourceTypeGroup:
		return "Group"
	case kmsg.ACLResourceTypeTransactionalId:
		return "TransactionalId"
	case kmsg.ACLResourceTypeCluster:
		return "Cluster"
	}
	return rt.String()
}

// aclsOperation is an operation as kafka-acls.sh spells it: DescribeConfigs.
func aclsOperation(op kmsg.ACLOperation) string {
	var b strings.Builder
	for _, w := range strings.Split(op.String(), "_") {
		if w != "" {
			b.WriteString(w[:1] + strings.ToLower(w[1:]))
		}
	}
	return b.String()
}

// PermissionError lists the permissions (ACLs) the worker's principal
// lacks. A worker missing any of them would fail later in a less readable
// way (or, for a reply topic, silently drop replies).
type PermissionError struct {
	Missing []Permission
}

func (e *PermissionError) Error() string {
	var b strings.Builder
	b.WriteString("topology: the Kafka principal lacks these permissions (ACLs):")
	for _, p := range e.Missing {
		b.WriteString("\n  - " + p.String())
	}
	b.WriteString("\ngrant them (or with kadm's CreateACLs):")
	for _, p := range e.Missing {
		b.WriteString("\n  " + p.Command("<broker>", "User:<user>"))
	}
	return b.String()
}

func topicPerm(op kmsg.ACLOperation, name, why string) Permission {
	return Permission{Operation: op, ResourceType: kmsg.ACLResourceTypeTopic, Resource: name, Why: why}
}

// RequiredPermissions is ProcessorPermissions.
func RequiredPermissions(cfg Config) []Permission { return ProcessorPermissions(cfg) }

// ProcessorPermissions lists the ACLs a worker with cfg needs. Besides them
// it needs Write on every other reply topic its commands name (the transfer
// saga's legs name none: they are answered on Topics.Replies).
func ProcessorPermissions(cfg Config) []Permission {
	cfg.setDefaults()
	t := cfg.Topics
	perms := []Permission{
		topicPerm(kmsg.ACLOperationRead, t.Commands, "consume commands"),
		topicPerm(kmsg.ACLOperationWrite, t.Events, "write events"),
		topicPerm(kmsg.ACLOperationRead, t.Events, "rebuild a snapshot the current schemas cannot read from its events"),
		topicPerm(kmsg.ACLOperationRead, t.Changelog, "restore stores"),
		topicPerm(kmsg.ACLOperationWrite, t.Changelog, "write snapshots"),
		topicPerm(kmsg.ACLOperationWrite, t.Replies, "write replies"),
		topicPerm(kmsg.ACLOperationWrite, t.DeadLetters, "write dead letters"),
	}
	if t.Keys != "" {
		perms = append(perms,
			topicPerm(kmsg.ACLOperationRead, t.Keys, "load the data keys of personal data"),
			topicPerm(kmsg.ACLOperationWrite, t.Keys, "write data keys and erasure markers"))
	}
	for _, s := range t.Specs() {
		perms = append(perms, topicPerm(kmsg.ACLOperationDescribeConfigs, s.Name, "verify topic configs"))
	}
	for _, s := range t.Specs() {
		p := topicPerm(kmsg.ACLOperationCreate, s.Name, "create the topic")
		p.ToCreate = true
		perms = append(perms, p)
	}
	if st := cfg.schemaTopic(); st != "" {
		create := topicPerm(kmsg.ACLOperationCreate, st, "create the schema topic")
		create.ToCreate = true
		perms = append(perms,
			topicPerm(kmsg.ACLOperationWrite, st, "publish this build's schemas (older builds learn them in a rollback)"),
			topicPerm(kmsg.ACLOperationRead, st, "learn a newer build's schemas (rollbacks)"),
			create)
	}
	return append(perms,
		Permission{Operation: kmsg.ACLOperationRead, ResourceType: kmsg.ACLResourceTypeGroup, Resource: cfg.Group, Why: "join the consumer group, commit offsets"},
		Permission{Operation: kmsg.ACLOperationWrite, ResourceType: kmsg.ACLResourceTypeTransactionalId, Resource: cfg.Group + "-" + cfg.InstanceID, Why: "transactions"},
	)
}

// SagaNames are the names the transfer saga uses (package saga's Config,
// defaulted).
type SagaNames struct {
	Events, Commands, State, Group, InstanceID string
}

// SagaPermissions lists the ACLs the transfer saga needs (its legs are
// answered on the processor's default reply topic, which the processor may
// already write).
func SagaPermissions(n SagaNames) []Permission {
	return []Permission{
		topicPerm(kmsg.ACLOperationRead, n.Events, "saga: read debits"),
		topicPerm(kmsg.ACLOperationWrite, n.Commands, "saga: send credits, completions and refunds"),
		topicPerm(kmsg.ACLOperationRead, n.State, "saga: read its state topic (the group's first start)"),
		topicPerm(kmsg.ACLOperationWrite, n.State, "saga: record the group's first start"),
		topicPerm(kmsg.ACLOperationCreate, n.State, "saga: create its state topic (asked at every start)"),
		{Operation: kmsg.ACLOperationRead, ResourceType: kmsg.ACLResourceTypeGroup, Resource: n.Group, Why: "saga: join its consumer group, commit offsets"},
		{Operation: kmsg.ACLOperationWrite, ResourceType: kmsg.ACLResourceTypeTransactionalId, Resource: n.Group + "-" + n.InstanceID, Why: "saga: transactions"},
	}
}

// ProjectorPermissions lists the ACLs a projector needs: it reads events
// and keeps its groups, tables, intermediate and dead-letter topics under
// prefix (goka creates them).
func ProjectorPermissions(events, prefix string) []Permission {
	prefixed := func(p Permission) Permission { p.Prefixed = true; return p }
	return []Permission{
		topicPerm(kmsg.ACLOperationRead, events, "read events"),
		prefixed(topicPerm(kmsg.ACLOperationRead, prefix, "read tables and intermediate topics")),
		prefixed(topicPerm(kmsg.ACLOperationWrite, prefix, "write tables, intermediate and dead-letter topics")),
		prefixed(topicPerm(kmsg.ACLOperationCreate, prefix, "create tables, intermediate and dead-letter topics")),
		prefixed(topicPerm(kmsg.ACLOperationDescribeConfigs, prefix, "check the tables' configs")),
		prefixed(Permission{Operation: kmsg.ACLOperationRead, ResourceType: kmsg.ACLResourceTypeGroup, Resource: prefix, Why: "the read models' consumer groups"}),
	}
}

// CLIPermissions lists the ACLs of every kcqrs subcommand that talks to
// Kafka. Each Why starts with the subcommands that need the permission
// ("send, transfer --wait: ..."; a variant such as "reset --execute" is
// needed only with that flag), which the CLI names when a broker refuses
// one (cmd/kcqrs/acl.go) and its test checks one by one.
func CLIPermissions(cfg Config, projectorPrefix string) []Permission {
	cfg.setDefaults()
	keys := cfg.Topics.Keys
	if keys == "" {
		keys = DefaultKeysTopic
	}
	prefixed := func(p Permission) Permission { p.Prefixed = true; return p }
	return []Permission{
		topicPerm(kmsg.ACLOperationWrite, cfg.Topics.Commands, "send, transfer, dlq redrive --execute, erase: send commands (erase's dry run: its partitions)"),
		topicPerm(kmsg.ACLOperationRead, cfg.Topics.Replies, "send, transfer, erase --execute: read replies"),
		topicPerm(kmsg.ACLOperationRead, cfg.Topics.Events, "transfer --wait, transfers, groups, rebuild, erase: read events (follow a transfer, list pending ones, end offsets, count an aggregate's events)"),
		topicPerm(kmsg.ACLOperationRead, cfg.Topics.DeadLetters, "dlq list, dlq show, dlq redrive: read dead letters"),
		topicPerm(kmsg.ACLOperationRead, keys, "erase: read the aggregate's data key"),
		topicPerm(kmsg.ACLOperationRead, cfg.Topics.Changelog, "erase: read the aggregate's snapshot"),
		prefixed(Permission{Operation: kmsg.ACLOperationDescribe, ResourceType: kmsg.ACLResourceTypeGroup, Resource: projectorPrefix, Why: "groups, reset, rebuild: list groups and their offsets"}),
		prefixed(topicPerm(kmsg.ACLOperationDescribe, projectorPrefix, "groups, reset, rebuild: end offsets of the read models' topics")),
		prefixed(Permission{Operation: kmsg.ACLOperationDelete, ResourceType: kmsg.ACLResourceTypeGroup, Resource: projectorPrefix, Why: "reset --execute: delete downstream groups"}),
		prefixed(Permission{Operation: kmsg.ACLOperationRead, ResourceType: kmsg.ACLResourceTypeGroup, Resource: projectorPrefix, Why: "reset --execute: commit new offsets"}),
		prefixed(topicPerm(kmsg.ACLOperationDelete, projectorPrefix, "reset --execute: delete tables and intermediate topics")),
	}
}

// impliesDescribe: Kafka grants Describe with Read, Write, Delete and Alter
// (KIP-253), so a principal refused Describe has none of them.
func impliesDescribe(op kmsg.ACLOperation) bool {
	switch op {
	case kmsg.ACLOperationDescribe, kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationDelete, kmsg.ACLOperationAlter:
		return true
	}
	return false
}

// CheckPermissions checks ProcessorPermissions(cfg) (CheckPermissionSet).
func CheckPermissions(ctx context.Context, cl *kgo.Client, cfg Config) error {
	return CheckPermissionSet(ctx, cl, ProcessorPermissions(cfg))
}

// CheckPermissionSet asks the brokers which of need the client's principal
// has (KIP-430 authorized operations of topics and groups, and a describe
// of transactional ids) and returns a *PermissionError naming every one it
// lacks. Permissions marked ToCreate, prefixed ones and cluster ones are
// not asked for. Brokers that do not report authorized operations pass the
// check; the missing permission then surfaces as an authorization error
// later.
func CheckPermissionSet(ctx context.Context, cl *kgo.Client, need []Permission) error {
	var missing []Permission

	topicOps := map[string]int32{}
	topicUnknown := map[string]bool{} // only the Describe-implying operations are known
	meta := kmsg.NewPtrMetadataRequest()
	meta.IncludeTopicAuthorizedOperations = true
	// Never create a topic by asking about it: a broker that auto-creates
	// would refuse a principal without Create, and every permission on the
	// topic would look missing.
	meta.AllowAutoTopicCreation = false
	seen := map[string]bool{}
	var groups, txnIDs []string
	for _, p := range need {
		if p.ToCreate || p.Prefixed || seen[p.ResourceType.String()+"/"+p.Resource] {
			continue
		}
		seen[p.ResourceType.String()+"/"+p.Resource] = true
		switch p.ResourceType {
		case kmsg.ACLResourceTypeTopic:
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(p.Resource)
			meta.Topics = append(meta.Topics, rt)
		case kmsg.ACLResourceTypeGroup:
			groups = append(groups, p.Resource)
		case kmsg.ACLResourceTypeTransactionalId:
			txnIDs = append(txnIDs, p.Resource)
		}
	}
	if len(meta.Topics) > 0 {
		resp, err := meta.RequestWith(ctx, cl)
		if err != nil {
			return fmt.Errorf("topology: check permissions: %w", err)
		}
		for _, t := range resp.Topics {
			if t.Topic == nil {
				continue
			}
			switch err := kerr.ErrorForCode(t.ErrorCode); {
			case errors.Is(err, kerr.TopicAuthorizationFailed):
				// Not even Describe, so none of the operations that
				// imply it; others (DescribeConfigs, Create) are
				// unknown, and a granted one must not be reported.
				topicOps[*t.Topic] = 0
				topicUnknown[*t.Topic] = true
			case (err == nil || errors.Is(err, kerr.UnknownTopicOrPartition)) && t.AuthorizedOperations != math.MinInt32:
				topicOps[*t.Topic] = t.AuthorizedOperations
			}
		}
	}

	groupOps := map[string]int32{}
	if len(groups) > 0 {
		dg := kmsg.NewPtrDescribeGroupsRequest()
		dg.Groups = groups
		dg.IncludeAuthorizedOperations = true
		gr, err := dg.RequestWith(ctx, cl)
		switch {
		case errors.Is(err, kerr.GroupAuthorizationFailed):
			for _, g := range groups {
				groupOps[g] = 0 // even the coordinator lookup was denied
			}
		case err == nil:
			for _, g := range gr.Groups {
				switch err := kerr.ErrorForCode(g.ErrorCode); {
				case errors.Is(err, kerr.GroupAuthorizationFailed):
					groupOps[g.Group] = 0
				case (err == nil || errors.Is(err, kerr.GroupIDNotFound)) && g.AuthorizedOperations != math.MinInt32:
					groupOps[g.Group] = g.AuthorizedOperations
				}
			}
		}
	}

	txnDenied := map[string]bool{}
	if len(txnIDs) > 0 {
		dt := kmsg.NewPtrDescribeTransactionsRequest()
		dt.TransactionalIDs = txnIDs
		if tr, err := dt.RequestWith(ctx, cl); err == nil {
			for _, s := range tr.TransactionStates {
				if errors.Is(kerr.ErrorForCode(s.ErrorCode), kerr.TransactionalIDAuthorizationFailed) {
					txnDenied[s.TransactionalID] = true
				}
			}
		} else if errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
			for _, id := range txnIDs {
				txnDenied[id] = true
			}
		}
	}

	has := func(ops int32, op kmsg.ACLOperation) bool { return ops&(1<<int32(op)) != 0 }
	for _, p := range need {
		if p.ToCreate || p.Prefixed {
			continue
		}
		switch p.ResourceType {
		case kmsg.ACLResourceTypeTopic:
			if topicUnknown[p.Resource] && !impliesDescribe(p.Operation) {
				continue
			}
			if ops, ok := topicOps[p.Resource]; ok && !has(ops, p.Operation) {
				missing = append(missing, p)
			}
		case kmsg.ACLResourceTypeGroup:
			if ops, ok := groupOps[p.Resource]; ok && !has(ops, p.Operation) {
				missing = append(missing, p)
			}
		case kmsg.ACLResourceTypeTransactionalId:
			if txnDenied[p.Resource] {
				missing = append(missing, p)
			}
		}
	}
	if len(missing) > 0 {
		return &PermissionError{Missing: missing}
	}
	return nil
}
