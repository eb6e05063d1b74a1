// Package deadletter reads the dead-letter topic and turns dead letters back
// into commands: the code `kcqrs dlq` and the console share, so that a
// re-drive from either means the same thing.
package deadletter

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

var codePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// ErrorCode is the code of a kcqrs_dlq_error value ("code: message"), or ""
// when it starts with none.
func ErrorCode(e string) string {
	code, _, ok := strings.Cut(e, ": ")
	if !ok || !codePattern.MatchString(code) {
		return ""
	}
	return code
}

// Header is the value of r's last header key ("" when absent): the last
// one counts, as for the processor, and a dead letter's kcqrs_dlq_* headers
// follow the command's own (which may carry some too).
func Header(r *kgo.Record, key string) string {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == key {
			return string(r.Headers[i].Value)
		}
	}
	return ""
}

// SkipReason says why r cannot be re-driven, or "" when it can.
func SkipReason(r *kgo.Record) string {
	switch {
	case len(r.Key) == 0:
		return "skipped: no key, the processor cannot route it"
	case Header(r, wire.HeaderCommandID) == "":
		return "skipped: no command id, it could not be told from a duplicate"
	case r.Value == nil:
		return "skipped: no value (a copy too large to keep); the command is at " + Header(r, wire.HeaderDLQTopic) + "/" + Header(r, wire.HeaderDLQPartition) + "@" + Header(r, wire.HeaderDLQOffset)
	}
	return ""
}

// Redriven is the record a dead letter is re-driven as: its key, value and
// headers without the kcqrs_dlq_* ones, so the command keeps its id (and a
// command applied before is answered as a duplicate) and its reply address.
func Redriven(r *kgo.Record, commands string, partitions int32) *kgo.Record {
	out := &kgo.Record{Topic: commands, Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		if strings.HasPrefix(h.Key, "kcqrs_dlq_") {
			continue
		}
		out.Headers = append(out.Headers, h)
	}
	// The partition murmur2 picks, as every client must: the processor
	// refuses a command on any other.
	out.Partition = topology.PartitionFor(r.Key, partitions)
	return out
}

// Partitions is the partition count of topic.
func Partitions(ctx context.Context, adm *kadm.Client, topic string) (int32, error) {
	topics, err := adm.ListTopics(ctx, topic)
	if err == nil {
		err = topics.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("topic %q: %w", topic, err)
	}
	return int32(len(topics[topic].Partitions)), nil
}

// ReadCommitted reads a topic from its start to its last stable offset
// (read_committed). The end is decided by offsets, never by waiting for a
// particular record: control records are kept so that a transaction marker
// at the end is seen too. It reads the whole topic: fine for a dead-letter
// topic, which stays small while someone looks after it.
func ReadCommitted(ctx context.Context, topic string, opts []kgo.Opt) ([]*kgo.Record, error) {
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, err
	}
	if len(ends[topic]) == 0 {
		return nil, fmt.Errorf("topic %q does not exist", topic)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, err
	}
	want := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	for p, o := range ends[topic] {
		s, _ := starts.Lookup(topic, p)
		if o.Offset > s.Offset {
			want[p] = o.Offset
			from[p] = kgo.NewOffset().AtStart()
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(want) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w (still reading partitions %v)", err, want)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if r.Offset >= end-1 {
				delete(want, r.Partition)
			}
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out, nil
}
