// Package binarytest holds what the tests of the command binaries
// (cmd/processor, cmd/projector) share: a fake environment for their
// settings, the embedded broker they run against, running a binary's run
// function until the test ends, and reading its HTTP endpoints.
package binarytest
