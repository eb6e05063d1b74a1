// Package examples registers the example aggregates (bank account and
// folder) with their schemas, for the binaries, the demo and the tests.
package examples

import (
	"fmt"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/aggregates/folder"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/topology"
)

// Registry returns a registry serving the account and folder aggregates.
func Registry() (*topology.Registry, error) {
	reg, err := topology.NewRegistry()
	if err != nil {
		return nil, err
	}
	acc, err := schemas.LoadAccount()
	if err != nil {
		return nil, fmt.Errorf("examples: %w", err)
	}
	if err := reg.Register(account.Type, acc); err != nil {
		return nil, err
	}
	fol, err := schemas.LoadFolder()
	if err != nil {
		return nil, fmt.Errorf("examples: %w", err)
	}
	if err := reg.Register(folder.Type, fol); err != nil {
		return nil, err
	}
	return reg, nil
}
