package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kcqrs/kcqrs/history"
)

const historyIntro = `usage: kcqrs history <type> <id> [--from-version N] [--at-version N | --at-time T] [--format json|table]
       kcqrs history [flags] -- <type> <id>     (an id starting with '-')
       kcqrs history reindex [--state-dir DIR] [--events TOPIC]

Prints one aggregate's events (version, time, type, command id, payload),
read from the events topic at the offsets the processor's history index
holds: no partition scan. With --at-version or --at-time, prints the
aggregate's state as of that point instead, folded with the aggregate's own
Evolve. Reads go to a processor's (or the demo's) history endpoints
(--url, its --http-addr): GET /v1/streams/{type}/{id} and
GET /v1/aggregates/{type}/{id}.

reindex rebuilds a processor's index from the events topic, while that
processor is stopped (the index lives in its --state-dir).`

// splitPositional takes the leading arguments that are not flags (the
// command's positional arguments come first: kcqrs history account acc-1 ...),
// and every argument after "--", whatever it looks like: an aggregate id is
// any Kafka key, "-x" included (kcqrs erase -- account -x). The caller
// checks how many it got.
func splitPositional(args []string, n int) (pos, rest []string) {
	for len(args) > 0 && len(pos) < n && !strings.HasPrefix(args[0], "-") {
		pos, args = append(pos, args[0]), args[1:]
	}
	for i, a := range args {
		if a == "--" {
			return append(pos, args[i+1:]...), args[:i]
		}
	}
	return pos, args
}

func runHistory(args []string) error {
	if len(args) > 0 && args[0] == "reindex" {
		return runReindex(args[1:])
	}
	pos, rest := splitPositional(args, 2)
	fs := newCLI("history", historyIntro)
	var (
		base, format, atTime string
		from, atVersion      int64
		limit                int64
	)
	fs.Group("History")
	fs.String(&base, "url", "http://127.0.0.1:8080", "base URL of a processor's history endpoints (its --http-addr; the demo's --ops-addr)")
	fs.Int64(&from, "from-version", 1, "first version to print")
	fs.Int64(&limit, "limit", 0, "most events to print (0: all from --from-version)")
	fs.Int64(&atVersion, "at-version", 0, "print the state after this version instead of the events")
	fs.String(&atTime, "at-time", "", "print the state as of this RFC 3339 time instead of the events")
	fs.String(&format, "format", "table", "output: table or json")
	if err := fs.parse(rest); err != nil {
		return err
	}
	var problems []error
	if len(pos) != 2 {
		problems = append(problems, errors.New("want the aggregate type and id: kcqrs history <type> <id>"))
	}
	if format != "table" && format != "json" {
		problems = append(problems, fmt.Errorf("--format %q: want table or json", format))
	}
	if atVersion != 0 && atTime != "" {
		problems = append(problems, errors.New("give --at-version or --at-time, not both"))
	}
	if atVersion < 0 || from < 1 || limit < 0 {
		problems = append(problems, errors.New("--at-version, --from-version and --limit must be positive"))
	}
	if atTime != "" {
		if _, err := time.Parse(time.RFC3339Nano, atTime); err != nil {
			problems = append(problems, fmt.Errorf("--at-time %q: want RFC 3339 (2026-12-01T10:00:00Z)", atTime))
		}
	}
	if err := errors.Join(problems...); err != nil {
		return fs.usageError(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hc := &historyClient{base: strings.TrimRight(base, "/"), typ: pos[0], id: pos[1]}
	if atVersion > 0 || atTime != "" {
		q := url.Values{}
		if atVersion > 0 {
			q.Set("at_version", fmt.Sprint(atVersion))
		} else {
			q.Set("at_time", atTime)
		}
		var view history.StateView
		if err := hc.get(ctx, "/v1/aggregates/", q, &view); err != nil {
			return err
		}
		return printState(os.Stdout, format, view)
	}
	var all []history.StreamEvent
	for next := from; next > 0; {
		page := limit - int64(len(all))
		if limit == 0 || page > history.MaxLimit {
			page = history.MaxLimit
		}
		q := url.Values{"from_version": {fmt.Sprint(next)}, "limit": {fmt.Sprint(page)}}
		var p history.StreamPage
		if err := hc.get(ctx, "/v1/streams/", q, &p); err != nil {
			return err
		}
		all = append(all, p.Events...)
		next = p.NextFromVersion
		if limit > 0 && int64(len(all)) >= limit {
			break
		}
	}
	return printEvents(os.Stdout, format, hc.typ, hc.id, all)
}

type historyClient struct {
	base, typ, id string
}

func (c *historyClient) get(ctx context.Context, path string, q url.Values, out any) error {
	u := c.base + path + pathSegment(c.typ) + "/" + pathSegment(c.id) + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("history: %w", err)}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("history: %w (is a processor with --history serving on --url?)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		if resp.StatusCode == http.StatusNotFound {
			return &exitError{code: exitRejected, err: fmt.Errorf("history: %s", e.Error)}
		}
		return fmt.Errorf("history: %s: %s", resp.Status, e.Error)
	}
	return json.Unmarshal(body, out)
}

// pathSegment escapes s as one path segment. "." and ".." are escaped too
// (url.PathEscape leaves them): an HTTP server cleans them out of a path,
// which would ask for another resource than the aggregate so named.
func pathSegment(s string) string {
	if s == "." || s == ".." {
		return strings.ReplaceAll(s, ".", "%2E")
	}
	return url.PathEscape(s)
}

func printEvents(w io.Writer, format, typ, id string, evs []history.StreamEvent) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(history.StreamPage{AggregateType: typ, AggregateID: id, Events: evs})
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tTIME\tEVENT\tCOMMAND ID\tPAYLOAD")
	for _, e := range evs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", e.Version, e.Time, e.EventType, e.CommandID, truncate(string(e.Payload), 100))
	}
	if len(evs) == 0 {
		fmt.Fprintf(tw, "(no events of %s %q)\n", typ, id)
	}
	return tw.Flush()
}

func printState(w io.Writer, format string, v history.StateView) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tTIME\tSTATE")
	fmt.Fprintf(tw, "%d\t%s\t%s\n", v.Version, v.Time, string(v.State))
	return tw.Flush()
}

func runReindex(args []string) error {
	fs := newCLI("history reindex", historyIntro)
	var stateDir, topic string
	fs.Group("Reindex")
	fs.String(&stateDir, "state-dir", ".kcqrs/state", "the processor's --state-dir (the index is in <state-dir>/history-<events>)")
	fs.String(&topic, "events", "events", "the events topic")
	if err := fs.parse(args); err != nil {
		return err
	}
	opts, err := fs.clientOpts()
	if err != nil {
		return err
	}
	idx, err := history.OpenOrRebuild(history.IndexDir(stateDir, topic), slog.Default()) // a damaged index is removed first
	if err != nil {
		return fmt.Errorf("%w (stop the processor using --state-dir %s first)", err, stateDir)
	}
	defer idx.Close()
	if err := idx.Reset([16]byte{}); err != nil {
		return err
	}
	ix, err := history.NewIndexer(history.IndexerConfig{Index: idx, Topic: topic, ClientOpts: opts})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	start := time.Now()
	if err := ix.CatchUp(ctx); err != nil {
		return err
	}
	st := ix.Stats()
	fmt.Printf("reindexed %s: %d records read, %d events indexed, %d skipped (no kcqrs event headers), in %s\n",
		topic, st.Records, st.Indexed, st.Skipped, time.Since(start).Round(time.Millisecond))
	return nil
}
