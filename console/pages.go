package console

import (
	"net/http"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kcqrs/kcqrs/topology"
)

// This file holds the topology, workers and groups pages.

type topologyData struct {
	D       topology.Description
	Mermaid string
	Outputs []output
}

type output struct{ Role, Topic, Note string }

func (c *Console) topologyPage(w http.ResponseWriter, r *http.Request) {
	t := c.desc.Topology
	c.render(w, http.StatusOK, "topology", page{Title: "Topology", Nav: "topology", Data: topologyData{
		D: c.desc, Mermaid: c.desc.Mermaid(),
		Outputs: []output{
			{"events", t.Events, "infinite retention"},
			{"changelog", t.Changelog, "compacted; restores the stores"},
			{"replies", t.Replies, "or an allow-listed reply topic"},
			{"dead letters", t.DeadLetters, "commands that could not be handled"},
		},
	}})
}

// partitionRow is one partition of a group: who owns it and its lag.
type partitionRow struct {
	Topic     string
	Partition int32
	Owner     string // instance id (or member id); "" when unassigned
	Host      string
	Committed string // "-" when nothing is committed
	End       int64
	Lag       int64
	Err       string
}

// member is one member of a group with the partitions assigned to it.
type member struct {
	Name, MemberID, ClientID, Host string
	Assigned                       []string // "topic/partition"
}

// groupView is one consumer group.
type groupView struct {
	Name, Kind, State, Protocol string
	Members                     []member
	Partitions                  []partitionRow
	TotalLag                    int64
	Err                         string
}

type workersData struct {
	Group   groupView
	Open    []openTxn
	OpenErr string
	Workers []workerMetrics
	NoOps   bool
}

func (c *Console) workersPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	d := workersData{NoOps: len(c.o.OpsAddrs) == 0}
	lags, err := c.adm.Lag(ctx, c.group)
	var errText string
	if err != nil {
		errText = "describe group " + c.group + ": " + err.Error()
	} else {
		d.Group = c.view(lags[c.group])
	}
	open, err := c.openTransactions(ctx)
	d.Open, d.OpenErr = open, errString(err)
	for _, a := range c.o.OpsAddrs {
		d.Workers = append(d.Workers, c.scrape(ctx, a))
	}
	c.render(w, http.StatusOK, "workers", page{Title: "Workers", Nav: "workers", Error: errText, Data: d})
}

type groupsData struct {
	Prefix string
	Groups []groupView
}

func (c *Console) groupsPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	d := groupsData{Prefix: r.URL.Query().Get("prefix")}
	listed, err := c.adm.ListGroups(ctx)
	if err != nil {
		c.render(w, http.StatusBadGateway, "groups", page{Title: "Consumer groups", Nav: "groups", Error: "list groups: " + err.Error(), Data: d})
		return
	}
	var names []string
	for _, g := range listed.Groups() {
		if strings.HasPrefix(g, d.Prefix) {
			names = append(names, g)
		}
	}
	sort.Strings(names)
	var errText string
	if len(names) > 0 {
		lags, err := c.adm.Lag(ctx, names...)
		if err != nil {
			errText = "lag: " + err.Error()
		}
		for _, g := range names {
			if l, ok := lags[g]; ok {
				d.Groups = append(d.Groups, c.view(l))
			}
		}
	}
	c.render(w, http.StatusOK, "groups", page{Title: "Consumer groups", Nav: "groups", Error: errText, Data: d})
}

// kind guesses what a group is from its name (the defaults of the
// processor, the transfer saga and the projector).
func (c *Console) kind(g string) string {
	switch {
	case g == c.group:
		return "processor"
	case strings.Contains(g, "transfer") || strings.Contains(g, "saga"):
		return "saga"
	case strings.Contains(g, "proj"):
		return "projector"
	}
	return ""
}

func (c *Console) view(l kadm.DescribedGroupLag) groupView {
	v := groupView{Name: l.Group, Kind: c.kind(l.Group), State: l.State, Protocol: l.Protocol}
	if err := l.Error(); err != nil {
		v.Err = err.Error()
	}
	for _, m := range l.Members {
		mv := member{Name: memberName(&m), MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				ps := append([]int32(nil), t.Partitions...)
				sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
				for _, p := range ps {
					mv.Assigned = append(mv.Assigned, t.Topic+"/"+itoa(int64(p)))
				}
			}
		}
		v.Members = append(v.Members, mv)
	}
	for _, row := range l.Lag.Sorted() {
		pr := partitionRow{Topic: row.Topic, Partition: row.Partition, End: row.End.Offset, Lag: row.Lag, Committed: "-"}
		if row.Commit.At >= 0 {
			pr.Committed = itoa(row.Commit.At)
		}
		if row.Member != nil {
			pr.Owner, pr.Host = memberName(row.Member), row.Member.ClientHost
		}
		if row.Err != nil {
			pr.Err = row.Err.Error()
		}
		if row.Lag > 0 {
			v.TotalLag += row.Lag
		}
		v.Partitions = append(v.Partitions, pr)
	}
	return v
}

// memberName names a member the way its operator does: its static
// instance id, else its client id (a worker's is <group>-<instance id>),
// else the broker's member id.
func memberName(m *kadm.DescribedGroupMember) string {
	switch {
	case m.InstanceID != nil && *m.InstanceID != "":
		return *m.InstanceID
	case m.ClientID != "" && m.ClientID != "kgo": // "kgo": franz-go's default, the same for everyone
		return m.ClientID
	}
	return m.MemberID
}
