package console

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/deadletter"
	"github.com/kcqrs/kcqrs/wire"
)

// maxShown bounds the dead letters one page lists (the newest).
const maxShown = 500

// dlEntry is one dead letter as the page shows it.
type dlEntry struct {
	Partition              int32
	Offset                 int64
	Time                   time.Time
	Key, AggregateType     string
	CommandType, CommandID string
	Code, Error, From      string
	Headers                []dlHeader
	Value                  string
	Skip                   string // why it cannot be re-driven; "" when it can
}

type dlHeader struct{ Key, Value string }

type dlData struct {
	Topic, Commands string
	Entries         []dlEntry
	Total, Hidden   int
	AllowRedrive    bool
	Notice          string
}

func entryOf(r *kgo.Record) dlEntry {
	h := func(k string) string { return deadletter.Header(r, k) }
	e := dlEntry{Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp, Key: string(r.Key),
		AggregateType: h(wire.HeaderAggregateType), CommandType: h(wire.HeaderCommandType), CommandID: h(wire.HeaderCommandID),
		Error: h(wire.HeaderDLQError), From: fmt.Sprintf("%s/%s@%s", h(wire.HeaderDLQTopic), h(wire.HeaderDLQPartition), h(wire.HeaderDLQOffset)),
		Skip: deadletter.SkipReason(r)}
	e.Code = deadletter.ErrorCode(e.Error)
	for _, hd := range r.Headers {
		e.Headers = append(e.Headers, dlHeader{Key: hd.Key, Value: shown(hd.Value)})
	}
	e.Value = shown(r.Value)
	return e
}

// shown is b as text when it is UTF-8 (html/template escapes it), else
// its size: an Avro body is not readable as text.
func shown(b []byte) string {
	switch {
	case b == nil:
		return "(none)"
	case utf8.Valid(b):
		return string(b)
	}
	return fmt.Sprintf("(%d bytes, binary)", len(b))
}

func (c *Console) deadLettersPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	d := dlData{Topic: c.topic.DeadLetters, Commands: c.topic.Commands, AllowRedrive: c.o.AllowRedrive}
	recs, err := deadletter.ReadCommitted(ctx, c.topic.DeadLetters, c.o.ClientOpts)
	if err != nil {
		c.render(w, http.StatusBadGateway, "deadletters", page{Title: "Dead letters", Nav: "deadletters", Error: "read " + c.topic.DeadLetters + ": " + err.Error(), Data: d})
		return
	}
	d.Total = len(recs)
	if len(recs) > maxShown {
		d.Hidden = len(recs) - maxShown
	}
	// Newest first.
	sortNewest(recs)
	for _, rec := range recs[:len(recs)-d.Hidden] {
		d.Entries = append(d.Entries, entryOf(rec))
	}
	if at := r.URL.Query().Get("redriven"); at != "" {
		for _, rec := range recs {
			if at == fmt.Sprintf("%d:%d", rec.Partition, rec.Offset) {
				d.Notice = fmt.Sprintf("re-drove dead letter %s (command %s) to %s; its reply goes to its original reply topic",
					at, deadletter.Header(rec, wire.HeaderCommandID), c.topic.Commands)
			}
		}
	}
	c.render(w, http.StatusOK, "deadletters", page{Title: "Dead letters", Nav: "deadletters", Data: d})
}

// sortNewest puts the newest dead letters first (by time across
// partitions, by offset within one).
func sortNewest(recs []*kgo.Record) {
	sort.SliceStable(recs, func(i, j int) bool {
		if !recs[i].Timestamp.Equal(recs[j].Timestamp) {
			return recs[i].Timestamp.After(recs[j].Timestamp)
		}
		if recs[i].Partition != recs[j].Partition {
			return recs[i].Partition < recs[j].Partition
		}
		return recs[i].Offset > recs[j].Offset
	})
}

// redrive re-sends one dead letter (form fields partition, offset) to the
// commands topic, as `kcqrs dlq redrive --at P:O --execute` does.
func (c *Console) redrive(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, msg string) {
		c.render(w, status, "message", page{Title: "Re-drive", Nav: "deadletters", Error: msg})
	}
	if !c.o.AllowRedrive {
		fail(http.StatusForbidden, "re-drive is disabled: this console is read-only (start it with --allow-redrive to re-drive dead letters)")
		return
	}
	p, perr := strconv.ParseInt(r.FormValue("partition"), 10, 32)
	o, oerr := strconv.ParseInt(r.FormValue("offset"), 10, 64)
	if perr != nil || oerr != nil || p < 0 || o < 0 {
		fail(http.StatusBadRequest, "re-drive: want the form fields partition and offset (non-negative integers)")
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	recs, err := deadletter.ReadCommitted(ctx, c.topic.DeadLetters, c.o.ClientOpts)
	if err != nil {
		fail(http.StatusBadGateway, "re-drive: read "+c.topic.DeadLetters+": "+err.Error())
		return
	}
	var rec *kgo.Record
	for _, x := range recs {
		if x.Partition == int32(p) && x.Offset == o {
			rec = x
		}
	}
	if rec == nil {
		fail(http.StatusNotFound, fmt.Sprintf("re-drive: no dead letter at %d:%d on %s", p, o, c.topic.DeadLetters))
		return
	}
	if why := deadletter.SkipReason(rec); why != "" {
		fail(http.StatusUnprocessableEntity, fmt.Sprintf("re-drive %d:%d: %s", p, o, why))
		return
	}
	n, err := deadletter.Partitions(ctx, c.adm, c.topic.Commands)
	if err != nil {
		fail(http.StatusBadGateway, "re-drive: commands "+err.Error())
		return
	}
	out := deadletter.Redriven(rec, c.topic.Commands, n)
	pcl, err := kgo.NewClient(append(append([]kgo.Opt(nil), c.o.ClientOpts...), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		fail(http.StatusInternalServerError, "re-drive: "+err.Error())
		return
	}
	defer pcl.Close()
	if err := pcl.ProduceSync(ctx, out).FirstErr(); err != nil {
		fail(http.StatusBadGateway, "re-drive: produce: "+err.Error())
		return
	}
	c.o.Logger.Info("console: re-drove a dead letter", "at", fmt.Sprintf("%d:%d", p, o), "command_id", deadletter.Header(rec, wire.HeaderCommandID), "to", fmt.Sprintf("%s/%d", out.Topic, out.Partition))
	// The page says what was done from the position alone: no text of
	// the URL reaches it, so a link cannot make it say something else.
	http.Redirect(w, r, fmt.Sprintf("/deadletters?redriven=%d:%d", p, o), http.StatusSeeOther)
}
