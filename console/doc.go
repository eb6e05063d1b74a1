// Package console is kcqrs's read-only web console: the topology, the
// workers and the partitions they own, the consumer groups with their lag,
// the dead-letter topic (with an optional re-drive) and an aggregate
// inspector. Pages are rendered on the server with html/template, the
// templates and the style sheet are embedded (go:embed), and no page needs
// JavaScript.
//
// The console only reads, through an ordinary Kafka client: the group
// descriptions and offsets of the admin API, the dead-letter topic and one
// changelog partition. The one write is the re-drive of a dead letter,
// refused unless Options.AllowRedrive is set; it has the semantics of
// `kcqrs dlq redrive --execute` (package internal/deadletter is shared).
//
// The topology is shown as an HTML rendering of topology.Description (boxes
// and arrows in CSS) with its Mermaid source below, rather than drawn by
// mermaid.js: that script is about 3 MB and needs JavaScript, which a
// console meant to load anywhere, offline and from a binary, does without.
//
// Costs: every page asks the cluster when it is loaded (nothing is
// cached). The dead-letter page reads the whole dead-letter topic, and the
// aggregate inspector reads the aggregate's changelog partition from its
// start to its end (the latest record for the key wins): fine for the sizes
// of a demo or a compacted changelog, slow for a partition of many GB.
package console
