package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/logread"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

type aggData struct {
	Types     []string
	Type, ID  string
	Looked    bool
	Found     bool
	Deleted   bool
	Topic     string
	Partition int32
	Offset    int64
	Time      time.Time
	Scanned   int64
	Version   int64
	State     string
	Recent    []wire.RecentCommand
	Note      string
}

// aggregatePage looks an aggregate's snapshot up in the changelog: the
// latest record for key type/id in the partition murmur2 picks for the
// aggregate id (the changelog is co-partitioned with the commands),
// read from the partition's start to its last stable offset (a full read
// of one partition per lookup: see the package doc).
func (c *Console) aggregatePage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := aggData{Types: c.o.Registry.AggregateTypes(), Type: q.Get("type"), ID: q.Get("id"), Topic: c.topic.Changelog}
	show := func(status int, errText string) {
		c.render(w, status, "aggregate", page{Title: "Aggregate", Nav: "aggregate", Error: errText, Data: d})
	}
	if d.Type == "" && d.ID == "" {
		show(http.StatusOK, "")
		return
	}
	if d.ID == "" {
		show(http.StatusBadRequest, "give the aggregate's id")
		return
	}
	if i := sort.SearchStrings(d.Types, d.Type); i == len(d.Types) || d.Types[i] != d.Type {
		show(http.StatusBadRequest, fmt.Sprintf("unknown aggregate type %q: the types are %v", d.Type, d.Types))
		return
	}
	d.Looked = true
	ctx, cancel := c.ctx(r)
	defer cancel()
	key := []byte(d.Type + "/" + d.ID) // the processor's changelog key (topology's snapshotKey)
	topic := c.topic.Changelog
	topics, err := c.adm.ListTopics(ctx, topic)
	if err == nil {
		err = topics.Error()
	}
	if err != nil {
		show(http.StatusBadGateway, fmt.Sprintf("changelog %q: %v", topic, err))
		return
	}
	// The changelog is co-partitioned with the commands topic: a snapshot
	// is in the partition of its aggregate's commands, murmur2 of the id.
	d.Partition = topology.PartitionFor([]byte(d.ID), int32(len(topics[topic].Partitions)))
	starts, err := c.adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	var ends kadm.ListedOffsets
	if err == nil {
		// The last stable offset: what a read_committed reader can reach.
		ends, err = c.adm.ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
	}
	if err != nil {
		show(http.StatusBadGateway, fmt.Sprintf("changelog %q offsets: %v", topic, err))
		return
	}
	so, _ := starts.Lookup(topic, d.Partition)
	eo, _ := ends.Lookup(topic, d.Partition)
	end := eo.Offset
	var last *kgo.Record
	_, err = logread.Read(ctx, c.cl, topic, d.Partition, so.Offset, end, logread.Options{}, func(rec *kgo.Record) error {
		d.Scanned++
		if bytes.Equal(rec.Key, key) {
			last = rec
		}
		return nil
	})
	if err != nil {
		show(http.StatusBadGateway, fmt.Sprintf("read %s[%d]: %v", topic, d.Partition, err))
		return
	}
	if last == nil {
		d.Note = fmt.Sprintf("no snapshot of %s/%s in %s[%d] (%d records read): the aggregate has never accepted a command", d.Type, d.ID, topic, d.Partition, d.Scanned)
		show(http.StatusNotFound, "")
		return
	}
	d.Found, d.Offset, d.Time = true, last.Offset, last.Timestamp
	if last.Value == nil {
		d.Deleted = true
		show(http.StatusOK, "")
		return
	}
	snap, state, err := c.o.Registry.DecodeSnapshot(last.Value)
	if err != nil {
		show(http.StatusOK, fmt.Sprintf("snapshot at %s[%d]@%d cannot be decoded: %v", topic, d.Partition, last.Offset, err))
		return
	}
	d.Version, d.Recent = snap.Version, snap.Recent
	js, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		d.State = fmt.Sprintf("%+v", state)
	} else {
		d.State = string(js)
	}
	show(http.StatusOK, "")
}
