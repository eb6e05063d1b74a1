package topologytest

import (
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/topology"
)

// ACLs are the embedded broker's ACLs granting exactly perms (for
// kfake.User), so a test can run a binary with the permissions the
// documentation lists, or with one of them left out.
func ACLs(perms []topology.Permission) []kfake.ACL {
	out := make([]kfake.ACL, 0, len(perms))
	for _, p := range perms {
		a := kfake.ACL{Resource: p.ResourceType, Name: p.Resource, Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: p.Operation, Allow: true}
		if p.Prefixed {
			a.Pattern = kmsg.ACLResourcePatternTypePrefixed
		}
		if p.ResourceType == kmsg.ACLResourceTypeCluster {
			a.Name = "kafka-cluster"
		}
		out = append(out, a)
	}
	return out
}

// Without returns perms less the i-th.
func Without(perms []topology.Permission, i int) []topology.Permission {
	out := append([]topology.Permission(nil), perms[:i]...)
	return append(out, perms[i+1:]...)
}
