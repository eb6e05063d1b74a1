package examplestest

import (
	"testing"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology/topologytest"
)

// Harness is topologytest.New with the examples' registry and the given
// number of partitions.
func Harness(t testing.TB, partitions int32) *topologytest.Harness {
	t.Helper()
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	return topologytest.New(t, reg, partitions)
}
