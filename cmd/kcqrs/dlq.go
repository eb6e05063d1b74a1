package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/deadletter"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// This file is `kcqrs dlq`: list, show and re-drive dead letters.

const dlqUsage = `usage: kcqrs dlq list|show|redrive [flags]

  list     list the dead letters (partition, offset, command, error)
  show     print dead letters in full (every header, the value) as JSON
  redrive  send chosen dead letters back to the commands topic, with their
           original key, value, command id and headers (minus kcqrs_dlq_*);
           a dry run unless --execute. A re-driven command the processor
           applied before is answered as a duplicate, never applied twice.

Choose dead letters with --at partition:offset[,...] and/or the filters
--code, --command-type, --aggregate-type, --since; redrive needs a choice
(or --all). Run 'kcqrs dlq <command> --help' for every flag.`

// dlqSub is the subcommand of dlq args name ("list", ...), for withGrants.
func dlqSub(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func runDLQ(args []string) (rerr error) {
	defer func() { rerr = withGrants("dlq "+dlqSub(args), rerr) }()
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Println(dlqUsage)
			return nil
		}
		return &exitError{code: exitUsage, err: errors.New("dlq: want list, show or redrive\n\n" + dlqUsage)}
	}
	sub := args[0]
	switch sub {
	case "list", "show", "redrive":
	default:
		return &exitError{code: exitUsage, err: fmt.Errorf("dlq: unknown command %q\n\n%s", sub, dlqUsage)}
	}
	c := newCLI("dlq "+sub, dlqUsage)
	d := topology.Defaults().Topics
	var dlqTopic, commands string
	c.Group("Topics")
	c.String(&dlqTopic, "dlq-topic", d.DeadLetters, "dead-letter topic")
	c.String(&commands, "commands-topic", d.Commands, "command topic re-driven commands go to")
	var sel dlqSelection
	var at string
	var execute bool
	c.Group("Selection")
	c.FlagsOnly()
	c.String(&at, "at", "", "dead letters by position: partition:offset[,partition:offset...]")
	c.String(&sel.code, "code", "", "only dead letters with this error code (unknown_aggregate_type, undecodable, ...)")
	c.String(&sel.commandType, "command-type", "", "only commands of this type")
	c.String(&sel.aggregateType, "aggregate-type", "", "only commands for this aggregate type")
	c.String(&sel.since, "since", "", "only dead letters written at or after this time (RFC 3339)")
	if sub == "redrive" {
		c.Bool(&sel.all, "all", false, "re-drive every dead letter that passes the filters (needed when no filter and no --at is given)")
		c.Bool(&execute, "execute", false, "send them (default: a dry run that only lists them)")
	}
	if err := c.parse(args[1:]); err != nil {
		return err
	}
	if err := sel.parse(at); err != nil {
		return c.usageError(err)
	}
	if sub == "redrive" && !sel.chosen() && !sel.all {
		return c.usageError(errors.New("redrive: choose dead letters with --at or a filter (--code, --command-type, --aggregate-type, --since), or pass --all"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts, err := c.clientOpts()
	if err != nil {
		return err
	}
	recs, err := readCommitted(ctx, dlqTopic, opts)
	if err != nil {
		return fmt.Errorf("dlq: read %s: %w", dlqTopic, err)
	}
	var chosen []*kgo.Record
	for _, r := range recs {
		if sel.matches(r) {
			chosen = append(chosen, r)
		}
	}
	if missing := sel.missing(chosen); len(missing) > 0 {
		return fmt.Errorf("dlq: no dead letter at %s on %s", strings.Join(missing, ", "), dlqTopic)
	}
	switch sub {
	case "list":
		printDLQTable(chosen)
		return nil
	case "show":
		out := make([]dlqEntry, 0, len(chosen))
		for _, r := range chosen {
			out = append(out, entryOf(r))
		}
		return printJSON(os.Stdout, out)
	}
	return redrive(ctx, opts, commands, chosen, execute)
}

// dlqSelection chooses dead letters.
type dlqSelection struct {
	at                               map[int32]map[int64]bool
	code, commandType, aggregateType string
	since                            string
	sinceTime                        time.Time
	all                              bool
}

func (s *dlqSelection) parse(at string) error {
	var errs []error
	if at != "" {
		s.at = map[int32]map[int64]bool{}
		for _, pos := range strings.Split(at, ",") {
			p, o, ok := strings.Cut(strings.TrimSpace(pos), ":")
			pn, perr := strconv.ParseInt(p, 10, 32)
			on, oerr := strconv.ParseInt(o, 10, 64)
			if !ok || perr != nil || oerr != nil || pn < 0 || on < 0 {
				errs = append(errs, fmt.Errorf("--at %q: want partition:offset", pos))
				continue
			}
			if s.at[int32(pn)] == nil {
				s.at[int32(pn)] = map[int64]bool{}
			}
			s.at[int32(pn)][on] = true
		}
	}
	if s.since != "" {
		t, err := time.Parse(time.RFC3339Nano, s.since)
		if err != nil {
			errs = append(errs, fmt.Errorf("--since %q: want an RFC 3339 time", s.since))
		}
		s.sinceTime = t
	}
	return errors.Join(errs...)
}

func (s *dlqSelection) chosen() bool {
	return s.at != nil || s.code != "" || s.commandType != "" || s.aggregateType != "" || s.since != ""
}

func (s *dlqSelection) matches(r *kgo.Record) bool {
	if s.at != nil && !s.at[r.Partition][r.Offset] {
		return false
	}
	if s.code != "" && errorCode(header(r, wire.HeaderDLQError)) != s.code {
		return false
	}
	if s.commandType != "" && header(r, wire.HeaderCommandType) != s.commandType {
		return false
	}
	if s.aggregateType != "" && header(r, wire.HeaderAggregateType) != s.aggregateType {
		return false
	}
	return s.sinceTime.IsZero() || !r.Timestamp.Before(s.sinceTime)
}

// missing lists the --at positions no dead letter was found at.
func (s *dlqSelection) missing(found []*kgo.Record) []string {
	var out []string
	for p, offs := range s.at {
		for o := range offs {
			hit := false
			for _, r := range found {
				hit = hit || (r.Partition == p && r.Offset == o)
			}
			if !hit {
				out = append(out, fmt.Sprintf("%d:%d", p, o))
			}
		}
	}
	sort.Strings(out)
	return out
}

// errorCode, header: see package deadletter, shared with the console.
func errorCode(e string) string               { return deadletter.ErrorCode(e) }
func header(r *kgo.Record, key string) string { return deadletter.Header(r, key) }

func printDLQTable(recs []*kgo.Record) {
	if len(recs) == 0 {
		fmt.Println("no dead letters")
		return
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOFFSET\tTIME\tKEY\tAGGREGATE\tCOMMAND\tCOMMAND ID\tFROM\tERROR")
	for _, r := range recs {
		from := fmt.Sprintf("%s/%s@%s", header(r, wire.HeaderDLQTopic), header(r, wire.HeaderDLQPartition), header(r, wire.HeaderDLQOffset))
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Partition, r.Offset, r.Timestamp.UTC().Format(time.RFC3339),
			printable(string(r.Key), 24), printable(header(r, wire.HeaderAggregateType), 16), printable(header(r, wire.HeaderCommandType), 24),
			printable(header(r, wire.HeaderCommandID), 36), printable(from, 40), printable(header(r, wire.HeaderDLQError), 100))
	}
	tw.Flush()
	fmt.Printf("\n%d dead letter(s). 'kcqrs dlq show --at P:O' prints one in full; 'kcqrs dlq redrive --at P:O' re-sends it.\n", len(recs))
}

// printable shows s on one line of at most n runes: control characters
// become spaces; "-" for "".
func printable(s string, n int) string {
	if s == "" {
		return "-"
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\t' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n-3]) + "..."
	}
	return s
}

// dlqEntry is one dead letter as `dlq show` prints it.
type dlqEntry struct {
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Timestamp time.Time `json:"timestamp"`
	// Error is kcqrs_dlq_error, Code its code.
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
	// Source is where the command was read: kcqrs_dlq_topic, _partition, _offset.
	Source struct {
		Topic     string `json:"topic"`
		Partition string `json:"partition"`
		Offset    string `json:"offset"`
	} `json:"source"`
	Key     *string     `json:"key"`
	Headers []dlqHeader `json:"headers"`
	// Value is the value when it is UTF-8 text (a JSON command), else
	// ValueBase64 holds it (Avro).
	Value       *string `json:"value,omitempty"`
	ValueBase64 string  `json:"valueBase64,omitempty"`
}

// dlqHeader is a header; a value that is not UTF-8 (a binary correlation
// id, a 4-byte partition) is in ValueBase64.
type dlqHeader struct {
	Key         string  `json:"key"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 string  `json:"valueBase64,omitempty"`
}

func entryOf(r *kgo.Record) dlqEntry {
	e := dlqEntry{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC(), Error: header(r, wire.HeaderDLQError)}
	e.Code = errorCode(e.Error)
	e.Source.Topic, e.Source.Partition, e.Source.Offset = header(r, wire.HeaderDLQTopic), header(r, wire.HeaderDLQPartition), header(r, wire.HeaderDLQOffset)
	if r.Key != nil {
		k := string(r.Key)
		e.Key = &k
	}
	e.Headers = []dlqHeader{}
	for _, h := range r.Headers {
		dh := dlqHeader{Key: h.Key}
		if utf8.Valid(h.Value) {
			v := string(h.Value)
			dh.Value = &v
		} else {
			dh.ValueBase64 = base64.StdEncoding.EncodeToString(h.Value)
		}
		e.Headers = append(e.Headers, dh)
	}
	if utf8.Valid(r.Value) {
		v := string(r.Value)
		e.Value = &v
	} else {
		e.ValueBase64 = base64.StdEncoding.EncodeToString(r.Value)
	}
	return e
}

func redrive(ctx context.Context, opts []kgo.Opt, commands string, chosen []*kgo.Record, execute bool) error {
	cl, err := kgo.NewClient(append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	partitions, err := deadletter.Partitions(ctx, kadm.NewClient(cl), commands)
	if err != nil {
		return fmt.Errorf("dlq: commands %w", err)
	}
	var send []*kgo.Record
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ PARTITION\tOFFSET\tCOMMAND ID\tCOMMAND\tKEY\tTO\tNOTE")
	for _, r := range chosen {
		id := header(r, wire.HeaderCommandID)
		note, to := deadletter.SkipReason(r), "-"
		if note == "" {
			rec := deadletter.Redriven(r, commands, partitions)
			to = fmt.Sprintf("%s/%d", commands, rec.Partition)
			send = append(send, rec)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Partition, r.Offset, printable(id, 36), printable(header(r, wire.HeaderCommandType), 24), printable(string(r.Key), 24), to, note)
	}
	tw.Flush()
	if !execute {
		fmt.Printf("\ndry run: %d of %d dead letter(s) would be re-driven; nothing sent. Add --execute to send them.\n", len(send), len(chosen))
		return nil
	}
	if len(send) == 0 {
		fmt.Println("\nnothing to re-drive")
		return nil
	}
	if err := cl.ProduceSync(ctx, send...).FirstErr(); err != nil {
		return fmt.Errorf("dlq: re-drive: %w", err)
	}
	fmt.Printf("\nre-drove %d dead letter(s) to %s; their replies go to their original reply topics.\n", len(send), commands)
	return nil
}

// readCommitted reads a whole topic, read_committed (deadletter.ReadCommitted).
func readCommitted(ctx context.Context, topic string, opts []kgo.Opt) ([]*kgo.Record, error) {
	return deadletter.ReadCommitted(ctx, topic, opts)
}
