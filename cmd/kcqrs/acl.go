package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/topology"
)

// usedBy reports whether p (one of topology.CLIPermissions, whose Why starts
// "name, name: reason") is needed by the subcommand sub ("groups",
// "dlq list", "transfer --wait"). A variant needs what its base command
// needs: "transfer --wait" what "transfer" does.
func usedBy(p topology.Permission, sub string) bool {
	names, _, ok := strings.Cut(p.Why, ":")
	if !ok {
		return false
	}
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		if n == sub || strings.HasPrefix(sub, n+" -") {
			return true
		}
	}
	return false
}

// authKind is the resource type an authorization error refuses, or -1 for
// none (not an authorization error), 0 for one of unknown kind.
func authKind(err error) kmsg.ACLResourceType {
	switch {
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return kmsg.ACLResourceTypeTopic
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		return kmsg.ACLResourceTypeGroup
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return kmsg.ACLResourceTypeCluster
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return kmsg.ACLResourceTypeTransactionalId
	}
	// Some paths format the broker's error without wrapping it.
	msg := err.Error()
	switch {
	case strings.Contains(msg, "TOPIC_AUTHORIZATION_FAILED"):
		return kmsg.ACLResourceTypeTopic
	case strings.Contains(msg, "GROUP_AUTHORIZATION_FAILED"):
		return kmsg.ACLResourceTypeGroup
	case strings.Contains(msg, "AUTHORIZATION_FAILED"):
		return 0
	}
	return -1
}

// withGrants adds to an authorization error of subcommand sub the
// permissions it needs of the refused kind (topology.CLIPermissions with
// the default names; those named in the error when it names one) and the
// kafka-acls.sh commands granting them. Other errors are returned as they
// are.
func withGrants(sub string, err error) error {
	if err == nil {
		return nil
	}
	kind := authKind(err)
	if kind < 0 {
		return err
	}
	var of, named []topology.Permission
	for _, p := range topology.CLIPermissions(topology.Config{}, "kcqrs-proj-") {
		if !usedBy(p, sub) || (kind != 0 && p.ResourceType != kind) {
			continue
		}
		of = append(of, p)
		if strings.Contains(err.Error(), fmt.Sprintf("%q", p.Resource)) || strings.Contains(err.Error(), " "+p.Resource+" ") {
			named = append(named, p)
		}
	}
	if len(named) > 0 {
		of = named
	}
	if len(of) == 0 {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nkcqrs %s needs these permissions (ACLs; topic and group names as by default), one of them is missing:", sub)
	for _, p := range of {
		b.WriteString("\n  - " + p.String())
	}
	b.WriteString("\ngrant with:")
	for _, c := range topology.ACLCommands("<broker>", "User:<user>", of) {
		b.WriteString("\n  " + c)
	}
	return fmt.Errorf("%w%s", err, b.String())
}
