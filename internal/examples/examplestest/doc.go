// Package examplestest starts topology test harnesses on the example
// aggregates (internal/examples), as most of this module's integration
// tests do. It is for tests only: internal/examples stays free of the test
// harness and its embedded broker.
package examplestest
