package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ServerConfig configures a query Server.
type ServerConfig struct {
	// Projection gives the brokers, events topic, name prefix, state
	// directory (for the views' stores) and logger. Its Names.Version and
	// Registry are not used.
	Projection Config
	// Versions of the read models to serve, oldest first. Queries go to the
	// oldest until a newer one has caught up with it (see CaughtUp); then to
	// the newest caught-up one, never back. Default: Projection.Names.Version.
	Versions []int
	// CheckInterval is how often the catch-up of newer versions is checked.
	// Default 500ms.
	CheckInterval time.Duration
	// MaxWait caps the wait parameter of queries. Default 30s.
	MaxWait time.Duration
	// OpenPersonal, when set, opens a personal field's stored (sealed)
	// value for a response (personal.go). Default nil: values as stored.
	OpenPersonal func(aggregateType, aggregateID, value string) string
}

// Server answers read-model queries over HTTP/JSON from goka views. It is
// read-only: it has no handler that writes anything.
type Server struct {
	cfg      ServerConfig
	versions []*ReadModels
	active   atomic.Int32 // index into versions

	mu       sync.Mutex
	progress map[int]Progress
	caught   map[int]bool
}

// NewServer opens the views of every version.
func NewServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	cfg.Projection.setDefaults()
	if len(cfg.Versions) == 0 {
		cfg.Versions = []int{cfg.Projection.Names.Version}
	}
	if !sort.IntsAreSorted(cfg.Versions) {
		return nil, fmt.Errorf("projection: server: versions %v must be ascending", cfg.Versions)
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = 500 * time.Millisecond
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 30 * time.Second
	}
	s := &Server{cfg: cfg, progress: map[int]Progress{}, caught: map[int]bool{}}
	for _, v := range cfg.Versions {
		pc := cfg.Projection
		pc.Names.Version = v
		rm, err := OpenReadModels(ctx, pc)
		if err != nil {
			return nil, err
		}
		s.versions = append(s.versions, rm)
	}
	return s, nil
}

// Active returns the read models queries go to now.
func (s *Server) Active() *ReadModels { return s.versions[s.active.Load()] }

// Run runs the views and the switch-over check until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Registered, so that a reset sees the views (they are no group members).
	for _, rm := range s.versions {
		pc := s.cfg.Projection
		pc.Names.Version = rm.Names.Version
		reg, err := register(ctx, pc, KindView, nil)
		if err != nil {
			cancel() // the registrations made so far end
			return err
		}
		defer reg.wait()
	}
	defer cancel()
	errs := make(chan error, len(s.versions)+1)
	for _, rm := range s.versions {
		go func() { errs <- rm.Run(ctx); cancel() }()
	}
	go func() { errs <- s.switchLoop(ctx); cancel() }()
	var all []error
	for range len(s.versions) + 1 {
		if err := <-errs; err != nil && !errors.Is(err, context.Canceled) {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// ReadModels returns the views of a served version, nil if it is not served.
func (s *Server) ReadModels(version int) *ReadModels {
	for _, rm := range s.versions {
		if rm.Names.Version == version {
			return rm
		}
	}
	return nil
}

// VersionCaughtUp is the one definition of "caught up" that /v1/status and
// the projector's /metrics share: every group of the version has read every
// committed record of its input (CaughtUp) and, given rm, its views show
// everything the groups wrote (ReadModels.TablesCaughtUp).
func VersionCaughtUp(ctx context.Context, cl *kgo.Client, adm *kadm.Client, n Names, eventsTopic string, rm *ReadModels) (bool, Progress, error) {
	ok, pr, err := CaughtUp(ctx, cl, adm, n, eventsTopic)
	if err != nil || !ok || rm == nil {
		return ok, pr, err
	}
	ok, err = rm.TablesCaughtUp(ctx, adm)
	return ok, pr, err
}

// CheckCaughtUp checks now whether the active version has caught up with
// everything committed to the events topic so far (the demo waits for it
// before it prints totals).
func (s *Server) CheckCaughtUp(ctx context.Context) (bool, error) {
	cl, err := kgo.NewClient(s.cfg.Projection.kgoOpts()...)
	if err != nil {
		return false, fmt.Errorf("projection: server: %w", err)
	}
	defer cl.Close()
	rm := s.Active()
	ok, _, err := VersionCaughtUp(ctx, cl, kadm.NewClient(cl), rm.Names, s.cfg.Projection.EventsTopic, rm)
	return ok, err
}

// switchLoop checks every served version's catch-up each CheckInterval (for
// /v1/status) and switches queries to the newest caught-up one.
func (s *Server) switchLoop(ctx context.Context) error {
	cl, err := kgo.NewClient(s.cfg.Projection.kgoOpts()...)
	if err != nil {
		return fmt.Errorf("projection: server: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	t := time.NewTicker(s.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cur := int(s.active.Load())
		for i := len(s.versions) - 1; i >= 0; i-- {
			rm := s.versions[i]
			ok, pr, err := VersionCaughtUp(ctx, cl, adm, rm.Names, s.cfg.Projection.EventsTopic, rm)
			if err != nil {
				if ctx.Err() == nil {
					s.cfg.Projection.Logger.Warn("catch-up check failed", "version", rm.Names.Version, "err", err)
				}
				continue
			}
			s.mu.Lock()
			s.progress[rm.Names.Version], s.caught[rm.Names.Version] = pr, ok
			s.mu.Unlock()
			if ok && i > cur {
				s.cfg.Projection.Logger.Info("read models switched over", "from", s.versions[cur].Names.Version, "to", rm.Names.Version)
				s.active.Store(int32(i))
				cur = i
			}
		}
	}
}

// Handler returns the HTTP API:
//
//	GET /v1/accounts/{id}[?min_version=N&wait=2s]
//	GET /v1/owners/{owner}/accounts[?limit=N&after=<account id>]
//	GET /v1/totals
//	GET /v1/totals/{currency}
//	GET /v1/status
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/accounts/{id}", s.getAccount)
	mux.HandleFunc("GET /v1/owners/{owner}/accounts", s.getOwner)
	mux.HandleFunc("GET /v1/totals", s.getTotals)
	mux.HandleFunc("GET /v1/totals/{currency}", s.getTotal)
	mux.HandleFunc("GET /v1/status", s.getStatus)
	// Every other answer is JSON too (not Go's plain-text 404 and 405).
	notAllowed := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD")
		s.write(w, nil, http.StatusMethodNotAllowed, apiError{Error: "method " + r.Method + ": the query API is read-only (GET)"})
	}
	for _, p := range []string{"/v1/accounts/{id}", "/v1/owners/{owner}/accounts", "/v1/totals", "/v1/totals/{currency}", "/v1/status"} {
		mux.HandleFunc(p, notAllowed)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.write(w, nil, http.StatusNotFound, apiError{Error: "no such endpoint (an empty id or owner, or a slash in one not escaped as %2F?)"})
	})
	return mux
}

type apiError struct {
	Error      string `json:"error"`
	Key        string `json:"key,omitempty"`
	MinVersion int64  `json:"minVersion,omitempty"`
	// Version is the entry's current version (0: no entry) on a timeout.
	Version *int64 `json:"version,omitempty"`
}

func (s *Server) write(w http.ResponseWriter, rm *ReadModels, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	if rm != nil {
		w.Header().Set("X-Read-Model-Version", strconv.Itoa(rm.Names.Version))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// getAccount serves an account. With min_version it waits (up to wait, at
// most MaxWait) until the entry has reached that version: a client that got
// a reply with version N reads its own write. On timeout it answers 408
// with the version the entry has now.
func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var minVersion int64
	var wait time.Duration
	q := r.URL.Query()
	if mv := q.Get("min_version"); mv != "" {
		n, err := strconv.ParseInt(mv, 10, 64)
		if err != nil || n < 0 {
			s.write(w, nil, http.StatusBadRequest, apiError{Error: "min_version must be a non-negative integer", Key: id})
			return
		}
		minVersion = n
	}
	if ws := q.Get("wait"); ws != "" {
		d, err := time.ParseDuration(ws)
		if err != nil || d < 0 {
			s.write(w, nil, http.StatusBadRequest, apiError{Error: "wait must be a duration such as 2s or 500ms", Key: id})
			return
		}
		wait = min(d, s.cfg.MaxWait)
	}
	deadline := time.Now().Add(wait)
	for {
		rm := s.Active()
		a, err := rm.Account(id)
		if err != nil && (time.Now().After(deadline) || r.Context().Err() != nil) {
			// Typically a view that is still starting.
			s.write(w, rm, http.StatusServiceUnavailable, apiError{Error: err.Error(), Key: id})
			return
		}
		var have int64
		if a != nil {
			have = a.Version
		}
		if err == nil && a != nil && have >= minVersion {
			opened := s.openAccount(*a)
			s.write(w, rm, http.StatusOK, &opened)
			return
		}
		if err == nil && (time.Now().After(deadline) || r.Context().Err() != nil) {
			switch {
			case minVersion > 0:
				s.write(w, rm, http.StatusRequestTimeout, apiError{
					Error: fmt.Sprintf("account has not reached version %d yet", minVersion), Key: id,
					MinVersion: minVersion, Version: &have})
			default:
				s.write(w, rm, http.StatusNotFound, apiError{Error: "no such account", Key: id})
			}
			return
		}
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// OwnerResponse is one page of an owner's accounts, sorted by id. Next,
// when set, is the after parameter of the next page.
type OwnerResponse struct {
	Owner    string    `json:"owner"`
	Accounts []Account `json:"accounts"`
	Next     string    `json:"next,omitempty"`
}

// Owner pages: limit defaults to DefaultOwnerPage and is capped at MaxOwnerPage.
const (
	DefaultOwnerPage = 1000
	MaxOwnerPage     = 10000
)

// getOwner serves one page of an owner's accounts:
// ?limit=N (default DefaultOwnerPage) and ?after=<account id> (exclusive).
func (s *Server) getOwner(w http.ResponseWriter, r *http.Request) {
	owner := r.PathValue("owner")
	q := r.URL.Query()
	limit := DefaultOwnerPage
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 {
			s.write(w, nil, http.StatusBadRequest, apiError{Error: "limit must be a positive integer", Key: owner})
			return
		}
		limit = min(n, MaxOwnerPage)
	}
	after := q.Get("after")
	rm := s.Active()
	accs, last, more, err := s.ownerLookup(rm, owner, after, limit)
	if err != nil {
		s.write(w, rm, http.StatusServiceUnavailable, apiError{Error: err.Error(), Key: owner})
		return
	}
	if len(accs) == 0 && after == "" {
		s.write(w, rm, http.StatusNotFound, apiError{Error: "no accounts for this owner", Key: owner})
		return
	}
	resp := OwnerResponse{Owner: owner, Accounts: accs}
	if resp.Accounts == nil {
		resp.Accounts = []Account{}
	}
	if more {
		resp.Next = last
	}
	for i := range resp.Accounts {
		resp.Accounts[i] = s.openAccount(resp.Accounts[i])
	}
	s.write(w, rm, http.StatusOK, resp)
}

// TotalResponse is the running total of one currency (all partitions).
type TotalResponse struct {
	Currency     string `json:"currency"`
	Total        int64  `json:"total"`
	Accounts     int    `json:"accounts"`
	OpenAccounts int    `json:"openAccounts"`
}

func (s *Server) getTotals(w http.ResponseWriter, r *http.Request) {
	rm := s.Active()
	ts, err := rm.Totals()
	if err != nil {
		s.write(w, rm, http.StatusServiceUnavailable, apiError{Error: err.Error()})
		return
	}
	s.write(w, rm, http.StatusOK, struct {
		Totals []TotalResponse `json:"totals"`
	}{Totals: ts})
}

func (s *Server) getTotal(w http.ResponseWriter, r *http.Request) {
	cur := r.PathValue("currency")
	rm := s.Active()
	t, err := rm.Total(cur)
	if err != nil {
		s.write(w, rm, http.StatusServiceUnavailable, apiError{Error: err.Error(), Key: cur})
		return
	}
	if t == nil {
		s.write(w, rm, http.StatusNotFound, apiError{Error: "no accounts in this currency", Key: cur})
		return
	}
	s.write(w, rm, http.StatusOK, t)
}

// StatusResponse describes the served versions.
type StatusResponse struct {
	Active   int             `json:"active"`
	Versions []VersionStatus `json:"versions"`
}

// VersionStatus is one served version. CaughtUp is VersionCaughtUp at the
// last check (every CheckInterval), as the projector's
// kcqrs_projector_caught_up reports it.
type VersionStatus struct {
	Version   int   `json:"version"`
	Recovered bool  `json:"recovered"`
	CaughtUp  bool  `json:"caughtUp"`
	Done      int64 `json:"done,omitempty"`
	Total     int64 `json:"total,omitempty"`
}

// Status describes the served versions.
func (s *Server) Status() StatusResponse {
	act := s.Active()
	out := StatusResponse{Active: act.Names.Version}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rm := range s.versions {
		v := rm.Names.Version
		pr := s.progress[v]
		out.Versions = append(out.Versions, VersionStatus{Version: v, Recovered: rm.Recovered(),
			CaughtUp: s.caught[v], Done: pr.Done, Total: pr.Total})
	}
	return out
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	s.write(w, s.Active(), http.StatusOK, s.Status())
}
