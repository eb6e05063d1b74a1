package topology

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kcqrs/kcqrs/snapshots"
)

// Description is a processor topology as data: what it reads, writes,
// stores and which group and transactional ids it uses, like Kafka
// Streams' Topology#describe. Text and Mermaid render it.
type Description struct {
	Group           string
	TransactionalID string // with <instance-id> standing for each worker's id
	InstanceID      string // this worker's, if known
	Partitions      int32
	Topics          []TopicSpec
	AggregateTypes  []AggregateDescription
	StoreDir        string // with <p> standing for the partition
	Topology        Topics
}

// AggregateDescription lists an aggregate type's commands and events.
type AggregateDescription struct {
	Type     string
	Commands []string
	Events   []string
}

// Describe describes the topology cfg and reg define. Partitions is the
// configured count (existing topics keep theirs). Required fields may be
// empty: a description needs no broker.
func Describe(cfg Config, reg *Registry) Description {
	cfg.setDefaults()
	d := Description{
		Group:           cfg.Group,
		TransactionalID: cfg.Group + "-<instance-id>",
		InstanceID:      cfg.InstanceID,
		Partitions:      cfg.Partitions,
		Topics:          cfg.Topics.Specs(),
		StoreDir:        snapshots.PartitionDir(orDefault(cfg.StateDir, "<state-dir>"), cfg.Topics.Changelog, 0),
		Topology:        cfg.Topics,
	}
	d.StoreDir = strings.TrimSuffix(d.StoreDir, "0") + "<p>"
	if reg != nil {
		for _, t := range reg.AggregateTypes() {
			d.AggregateTypes = append(d.AggregateTypes, AggregateDescription{Type: t, Commands: reg.CommandTypes(t), Events: reg.EventTypes(t)})
		}
	}
	return d
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func configString(m map[string]*string) string {
	if len(m) == 0 {
		return "broker defaults"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+*m[k])
	}
	return strings.Join(parts, ", ")
}

// Text renders the description in the style of Kafka Streams'
// Topology#describe, followed by the topics, group and transactional id.
func (d Description) Text() string {
	var b strings.Builder
	t := d.Topology
	fmt.Fprintf(&b, "Topologies:\n")
	fmt.Fprintf(&b, "   Sub-topology: 0 (command processor, exactly once)\n")
	fmt.Fprintf(&b, "    Source: commands (topics: [%s])\n", t.Commands)
	fmt.Fprintf(&b, "      --> route-and-decide\n")
	fmt.Fprintf(&b, "    Processor: route-and-decide (stores: [snapshots])\n")
	fmt.Fprintf(&b, "      --> events, replies, dead-letters, snapshots-changelog\n")
	fmt.Fprintf(&b, "      <-- commands\n")
	fmt.Fprintf(&b, "    Sink: events (topic: %s, partition: the command's)\n", t.Events)
	fmt.Fprintf(&b, "      <-- route-and-decide\n")
	fmt.Fprintf(&b, "    Sink: replies (topic: %s, or the command's reply header if allow-listed)\n", t.Replies)
	fmt.Fprintf(&b, "      <-- route-and-decide\n")
	fmt.Fprintf(&b, "    Sink: dead-letters (topic: %s)\n", t.DeadLetters)
	fmt.Fprintf(&b, "      <-- route-and-decide\n")
	fmt.Fprintf(&b, "    Sink: snapshots-changelog (topic: %s, partition: the command's)\n", t.Changelog)
	fmt.Fprintf(&b, "      <-- route-and-decide\n")
	fmt.Fprintf(&b, "\nStores:\n")
	fmt.Fprintf(&b, "  snapshots: Pebble, one per owned partition, at %s\n", d.StoreDir)
	fmt.Fprintf(&b, "    changelog: %s (compacted; restore reads from the store's checkpoint to the last stable offset)\n", t.Changelog)
	fmt.Fprintf(&b, "\nTopics (co-partitioned ones must share one partition count; %d when created):\n", d.Partitions)
	for _, s := range d.Topics {
		co := ""
		if s.CoPartitioned {
			co = ", co-partitioned"
		}
		fmt.Fprintf(&b, "  %-14s %s%s; configs: %s\n", s.Role+":", s.Name, co, configString(s.Configs))
	}
	fmt.Fprintf(&b, "\nConsumer group: %s (reads %s with isolation.level=read_committed)\n", d.Group, t.Commands)
	fmt.Fprintf(&b, "Transactional id: %s (one per worker, stable across its restarts)\n", d.TransactionalID)
	if d.InstanceID != "" {
		fmt.Fprintf(&b, "  this worker: %s-%s\n", d.Group, d.InstanceID)
	}
	if len(d.AggregateTypes) > 0 {
		fmt.Fprintf(&b, "\nAggregate types:\n")
		for _, a := range d.AggregateTypes {
			fmt.Fprintf(&b, "  %s\n    commands: %s\n    events: %s\n", a.Type, strings.Join(a.Commands, ", "), strings.Join(a.Events, ", "))
		}
	}
	return b.String()
}

// Mermaid renders the description as a Mermaid flowchart.
func (d Description) Mermaid() string {
	var b strings.Builder
	t := d.Topology
	q := strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;").Replace
	types := make([]string, 0, len(d.AggregateTypes))
	for _, a := range d.AggregateTypes {
		types = append(types, a.Type)
	}
	fmt.Fprintf(&b, "flowchart LR\n")
	fmt.Fprintf(&b, "  client([client])\n")
	fmt.Fprintf(&b, "  commands[[\"%s<br/>topic, %d partitions\"]]\n", q(t.Commands), d.Partitions)
	fmt.Fprintf(&b, "  subgraph group[\"consumer group %s\"]\n", q(d.Group))
	fmt.Fprintf(&b, "    worker[\"processor worker<br/>txn id %s<br/>%s\"]\n", q(d.TransactionalID), q(strings.Join(types, ", ")))
	fmt.Fprintf(&b, "    store[(\"Pebble snapshots<br/>one per partition\")]\n")
	fmt.Fprintf(&b, "  end\n")
	fmt.Fprintf(&b, "  events[[\"%s<br/>infinite retention\"]]\n", q(t.Events))
	fmt.Fprintf(&b, "  changelog[[\"%s<br/>compacted\"]]\n", q(t.Changelog))
	fmt.Fprintf(&b, "  replies[[\"%s<br/>or an allow-listed reply topic\"]]\n", q(t.Replies))
	fmt.Fprintf(&b, "  dlq[[\"%s<br/>dead letters\"]]\n", q(t.DeadLetters))
	fmt.Fprintf(&b, "  client -- \"command, key = aggregate id\" --> commands\n")
	fmt.Fprintf(&b, "  commands -- read_committed --> worker\n")
	fmt.Fprintf(&b, "  worker <--> store\n")
	fmt.Fprintf(&b, "  worker -- \"one transaction with the offsets\" --> events & changelog & replies & dlq\n")
	fmt.Fprintf(&b, "  changelog -. restore .-> store\n")
	fmt.Fprintf(&b, "  replies --> client\n")
	return b.String()
}
