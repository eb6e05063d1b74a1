package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kcqrs/kcqrs/shred"
)

// Limits of the stream endpoint.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// StreamEvent is one event as the stream endpoint shows it.
type StreamEvent struct {
	Version   int64  `json:"version"`
	EventType string `json:"eventType"`
	Time      string `json:"time"`
	CommandID string `json:"commandId"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	// Payload is the event in Avro's JSON encoding of its current schema
	// (an upcaster that splits an old event gives an array of them).
	Payload json.RawMessage `json:"payload"`
}

// StreamPage is the answer of GET /v1/streams/{type}/{id}.
type StreamPage struct {
	AggregateType string        `json:"aggregateType"`
	AggregateID   string        `json:"aggregateId"`
	Events        []StreamEvent `json:"events"`
	// NextFromVersion is where the next page starts (0: this was the
	// last one).
	NextFromVersion int64 `json:"nextFromVersion,omitempty"`
}

// StateView is the answer of GET /v1/aggregates/{type}/{id}.
type StateView struct {
	AggregateType string          `json:"aggregateType"`
	AggregateID   string          `json:"aggregateId"`
	Version       int64           `json:"version"`
	Time          string          `json:"time,omitempty"`
	State         json.RawMessage `json:"state"`
}

// Handler serves, from r:
//
//	GET /v1/streams/{type}/{id}?from_version=N&limit=M
//	GET /v1/aggregates/{type}/{id}?at_version=N | at_time=RFC3339
//
// Bad parameters are answered 400, an unknown aggregate type or version
// 404, a partition not indexed yet 503, all with a JSON {"error": ...}.
func Handler(r *Reader) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/streams/{type}/{id}", r.serveStream)
	mux.HandleFunc("GET /v1/aggregates/{type}/{id}", r.serveState)
	// Every other answer is JSON too (not Go's plain-text 404 and 405).
	notAllowed := func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s: only GET", req.Method))
	}
	mux.HandleFunc("/v1/streams/{type}/{id}", notAllowed)
	mux.HandleFunc("/v1/aggregates/{type}/{id}", notAllowed)
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint %q: want /v1/streams/{type}/{id} or /v1/aggregates/{type}/{id}, with a non-empty id escaped as one path segment (a slash as %%2F)", capPath(req.URL.EscapedPath())))
	})
	return mux
}

// capPath bounds the path an error message quotes.
func capPath(p string) string {
	if len(p) > 200 {
		return p[:200] + "..."
	}
	return p
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (r *Reader) knownType(w http.ResponseWriter, typ string) bool {
	if !slices.Contains(r.cfg.Registry.AggregateTypes(), typ) {
		writeError(w, http.StatusNotFound, fmt.Errorf("unknown aggregate type %q (served: %v)", typ, r.cfg.Registry.AggregateTypes()))
		return false
	}
	return true
}

func readErrorCode(err error) int {
	switch {
	case errors.Is(err, ErrNoSuchVersion):
		return http.StatusNotFound
	case errors.Is(err, ErrIncomplete):
		return http.StatusGone
	case errors.Is(err, ErrNotIndexed), errors.Is(err, shred.ErrNoKey):
		// Not indexed yet, or the keys of personal data not loaded yet.
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// bounded bounds the tail a request may scan (ReaderConfig.MaxTail).
func (r *Reader) bounded(ctx context.Context) context.Context {
	return context.WithValue(ctx, maxTailKey{}, r.cfg.MaxTail)
}

// writeReadError answers a failed read; a 503 (the index still being
// built, the keys not loaded yet) says when to come back.
func writeReadError(w http.ResponseWriter, err error) {
	code := readErrorCode(err)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, code, err)
}

func positiveParam(req *http.Request, name string, def int64) (int64, error) {
	s := req.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", name, s)
	}
	return v, nil
}

func (r *Reader) serveStream(w http.ResponseWriter, req *http.Request) {
	typ, id := req.PathValue("type"), req.PathValue("id")
	if !r.knownType(w, typ) {
		return
	}
	from, err := positiveParam(req, "from_version", 1)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	limit, err := positiveParam(req, "limit", DefaultLimit)
	if err != nil || limit > MaxLimit {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: want 1..%d", MaxLimit))
		return
	}
	page, err := r.Page(r.bounded(req.Context()), typ, id, from, limit)
	if err != nil {
		writeReadError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// Page returns up to limit events of the aggregate from version from, as
// the stream endpoint shows them.
func (r *Reader) Page(ctx context.Context, typ, id string, from, limit int64) (StreamPage, error) {
	evs, err := r.History(ctx, typ, id, from, from+limit) // one more: is there a next page?
	if err != nil {
		return StreamPage{}, err
	}
	page := StreamPage{AggregateType: typ, AggregateID: id, Events: []StreamEvent{}}
	if int64(len(evs)) > limit {
		page.NextFromVersion = evs[limit].Version
		evs = evs[:limit]
	}
	for i := range evs {
		se, err := r.streamEvent(&evs[i])
		if err != nil {
			return StreamPage{}, err
		}
		page.Events = append(page.Events, se)
	}
	return page, nil
}

func (r *Reader) streamEvent(e *Event) (StreamEvent, error) {
	_, decoded, err := r.cfg.Open.DecodeEvents(e.Value)
	if err != nil {
		return StreamEvent{}, fmt.Errorf("history: %w", err)
	}
	parts := make([]json.RawMessage, 0, len(decoded))
	for _, d := range decoded {
		js, err := r.cfg.Registry.EventJSON(e.AggregateType, d)
		if err != nil {
			return StreamEvent{}, fmt.Errorf("history: %w", err)
		}
		parts = append(parts, js)
	}
	payload := json.RawMessage("null")
	if len(parts) == 1 {
		payload = parts[0]
	} else if len(parts) > 1 {
		payload, _ = json.Marshal(parts)
	}
	return StreamEvent{
		Version: e.Version, EventType: e.EventType, CommandID: e.CommandID,
		Time:      e.Time().Format(time.RFC3339Nano),
		Partition: e.Partition, Offset: e.Offset, Payload: payload,
	}, nil
}

func (r *Reader) serveState(w http.ResponseWriter, req *http.Request) {
	typ, id := req.PathValue("type"), req.PathValue("id")
	if !r.knownType(w, typ) {
		return
	}
	q := req.URL.Query()
	var at At
	if q.Get("at_version") != "" && q.Get("at_time") != "" {
		writeError(w, http.StatusBadRequest, errors.New("give at_version or at_time, not both"))
		return
	}
	v, err := positiveParam(req, "at_version", 0)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	at.Version = v
	if s := q.Get("at_time"); s != "" {
		if at.Time, err = parseAtTime(s); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("at_time=%q: want RFC 3339 (2026-12-01T10:00:00Z)", s))
			return
		}
		if at.Time.IsZero() {
			// Go's zero time, which At reads as "latest": it is before
			// every event.
			writeError(w, http.StatusNotFound, fmt.Errorf("%s %q has no events at %s", typ, id, s))
			return
		}
	}
	view, err := r.View(r.bounded(req.Context()), typ, id, at)
	if err != nil {
		writeReadError(w, err)
		return
	}
	if view.Version == 0 {
		writeError(w, http.StatusNotFound, fmt.Errorf("%s %q has no events at that point", typ, id))
		return
	}
	writeJSON(w, http.StatusOK, view)
}

// parseAtTime reads at_time as RFC 3339. A '+' of an offset sent
// unescaped in the query (curl '...?at_time=2026-12-01T11:00:00+01:00')
// arrives as a space: read back as the '+' it was.
func parseAtTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil && strings.Count(s, " ") == 1 {
		if t2, err2 := time.Parse(time.RFC3339Nano, strings.Replace(s, " ", "+", 1)); err2 == nil {
			return t2, nil
		}
	}
	return t, err
}

// View returns the aggregate's state at a point as the state endpoint
// shows it.
func (r *Reader) View(ctx context.Context, typ, id string, at At) (StateView, error) {
	st, err := r.StateAt(ctx, typ, id, at)
	if err != nil {
		return StateView{}, err
	}
	view := StateView{AggregateType: typ, AggregateID: id, Version: st.Version, State: json.RawMessage("null")}
	if st.Version > 0 {
		js, err := r.cfg.Registry.StateJSON(typ, st.State)
		if err != nil {
			return StateView{}, fmt.Errorf("history: %w", err)
		}
		view.State = js
		view.Time = time.UnixMilli(st.TimestampMillis).UTC().Format(time.RFC3339Nano)
	}
	return view, nil
}
