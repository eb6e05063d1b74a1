// Package bench measures the processor against the limits that matter, in
// one run on one broker, and reports ratios (absolute numbers depend on the
// machine; ratios measured side by side much less):
//
//   - ceiling: the processor against a raw franz-go GroupTransactSession that
//     consumes the same command records and produces the same number and size
//     of records per command, with the same transaction bounds;
//   - EOS cost: the raw pass-through transactional against at-least-once (the
//     processor itself has no at-least-once mode);
//   - peer: an idiomatic goka processor (group table, at-least-once) of the
//     same account domain on the same broker and workload;
//   - latency: command-to-reply through the client package at a fixed
//     fraction of the measured maximum;
//   - restore: changelog restore into Pebble against a raw consume of the
//     same changelog; warm restarts after a clean stop and after SIGKILL;
//     peak RSS of a processor holding many aggregates (separate processes).
//
// cmd/kcqrs-bench runs it; `make bench` and `make bench-quick` call that.
package bench
