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

// Permission is one Kafka ACL a worker needs.
type Permission struct {
	Operation    kmsg.ACLOperation    // Read, Write, Create, ...
	ResourceType kmsg.ACLResourceType // Topic, Group, TransactionalId, Cluster
	Resource     string
	Why          string
}

func (p Permission) String() string {
	return fmt.Sprintf("%s on %s %q (%s)", p.Operation, resourceName(p.ResourceType), p.Resource, p.Why)
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
	b.WriteString("topology: the worker's Kafka principal lacks these permissions (ACLs):")
	for _, p := range e.Missing {
		b.WriteString("\n  - " + p.String())
	}
	b.WriteString("\ngrant them, e.g. kafka-acls.sh --bootstrap-server <broker> --add --allow-principal User:<user>")
	p := e.Missing[0]
	switch p.ResourceType {
	case kmsg.ACLResourceTypeTopic:
		fmt.Fprintf(&b, " --operation %s --topic %s", aclsOperation(p.Operation), p.Resource)
	case kmsg.ACLResourceTypeGroup:
		fmt.Fprintf(&b, " --operation %s --group %s", aclsOperation(p.Operation), p.Resource)
	case kmsg.ACLResourceTypeTransactionalId:
		fmt.Fprintf(&b, " --operation %s --transactional-id %s", aclsOperation(p.Operation), p.Resource)
	default:
		fmt.Fprintf(&b, " --operation %s --cluster", aclsOperation(p.Operation))
	}
	b.WriteString(" (or kadm's CreateACLs)")
	return b.String()
}

// RequiredPermissions lists the ACLs a worker with cfg needs (besides
// Create, needed only while topics are missing, and Write on the reply
// topics commands name).
func RequiredPermissions(cfg Config) []Permission {
	cfg.setDefaults()
	t := cfg.Topics
	topic := func(op kmsg.ACLOperation, name, why string) Permission {
		return Permission{op, kmsg.ACLResourceTypeTopic, name, why}
	}
	return []Permission{
		topic(kmsg.ACLOperationRead, t.Commands, "consume commands"),
		topic(kmsg.ACLOperationWrite, t.Events, "write events"),
		topic(kmsg.ACLOperationRead, t.Changelog, "restore stores"),
		topic(kmsg.ACLOperationWrite, t.Changelog, "write snapshots"),
		topic(kmsg.ACLOperationWrite, t.Replies, "write replies"),
		topic(kmsg.ACLOperationWrite, t.DeadLetters, "write dead letters"),
		topic(kmsg.ACLOperationDescribeConfigs, t.Changelog, "verify topic configs"),
		topic(kmsg.ACLOperationDescribeConfigs, t.Events, "verify topic configs"),
		{kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, cfg.Group, "join the consumer group, commit offsets"},
		{kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, cfg.Group + "-" + cfg.InstanceID, "transactions"},
	}
}

// CheckPermissions asks the brokers which of RequiredPermissions the
// client's principal has (KIP-430 authorized operations, and a describe of
// the transactional id) and returns a *PermissionError naming every one it
// lacks. Brokers that do not report authorized operations pass the check;
// the missing permission then surfaces as an authorization error later.
func CheckPermissions(ctx context.Context, cl *kgo.Client, cfg Config) error {
	cfg.setDefaults()
	need := RequiredPermissions(cfg)
	var missing []Permission

	topicOps := map[string]int32{}
	meta := kmsg.NewPtrMetadataRequest()
	meta.IncludeTopicAuthorizedOperations = true
	seen := map[string]bool{}
	for _, p := range need {
		if p.ResourceType == kmsg.ACLResourceTypeTopic && !seen[p.Resource] {
			seen[p.Resource] = true
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(p.Resource)
			meta.Topics = append(meta.Topics, rt)
		}
	}
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
			topicOps[*t.Topic] = 0 // not even Describe
		case err == nil && t.AuthorizedOperations != math.MinInt32:
			topicOps[*t.Topic] = t.AuthorizedOperations
		}
	}

	groupOps, groupKnown := int32(0), false
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Groups = []string{cfg.Group}
	dg.IncludeAuthorizedOperations = true
	gr, err := dg.RequestWith(ctx, cl)
	if errors.Is(err, kerr.GroupAuthorizationFailed) {
		groupKnown = true // even the coordinator lookup was denied
	} else if err == nil && len(gr.Groups) == 1 {
		g := gr.Groups[0]
		switch err := kerr.ErrorForCode(g.ErrorCode); {
		case errors.Is(err, kerr.GroupAuthorizationFailed):
			groupKnown = true
		case (err == nil || errors.Is(err, kerr.GroupIDNotFound)) && g.AuthorizedOperations != math.MinInt32:
			groupOps, groupKnown = g.AuthorizedOperations, true
		}
	}

	txnDenied := false
	dt := kmsg.NewPtrDescribeTransactionsRequest()
	dt.TransactionalIDs = []string{cfg.Group + "-" + cfg.InstanceID}
	if tr, err := dt.RequestWith(ctx, cl); err == nil {
		for _, s := range tr.TransactionStates {
			if errors.Is(kerr.ErrorForCode(s.ErrorCode), kerr.TransactionalIDAuthorizationFailed) {
				txnDenied = true
			}
		}
	} else if errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		txnDenied = true
	}

	has := func(ops int32, op kmsg.ACLOperation) bool { return ops&(1<<int32(op)) != 0 }
	for _, p := range need {
		switch p.ResourceType {
		case kmsg.ACLResourceTypeTopic:
			if ops, ok := topicOps[p.Resource]; ok && !has(ops, p.Operation) {
				missing = append(missing, p)
			}
		case kmsg.ACLResourceTypeGroup:
			if groupKnown && !has(groupOps, p.Operation) {
				missing = append(missing, p)
			}
		case kmsg.ACLResourceTypeTransactionalId:
			if txnDenied {
				missing = append(missing, p)
			}
		}
	}
	if len(missing) > 0 {
		return &PermissionError{Missing: missing}
	}
	return nil
}
