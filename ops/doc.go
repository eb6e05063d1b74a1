// Package ops serves what operators scrape and probe: Prometheus metrics
// (/metrics), liveness (/healthz), readiness (/readyz) and, when enabled,
// pprof. Metrics implements topology.Observer. It binds to localhost unless
// told otherwise: these endpoints reveal internals and pprof can be costly.
package ops
