package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is where the endpoints listen unless told otherwise: the
// loopback interface only.
const DefaultAddr = "127.0.0.1:8080"

// Readiness says whether a worker should receive traffic.
type Readiness interface{ Ready() bool }

// ReadyFunc adapts a function to Readiness.
type ReadyFunc func() bool

// Ready implements Readiness.
func (f ReadyFunc) Ready() bool { return f() }

// Options configures the HTTP endpoints.
type Options struct {
	// Addr to listen on. Default DefaultAddr (loopback only).
	Addr string
	// Gatherer is served on /metrics. Default prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Ready answers /readyz: 200 when ready, 503 otherwise. Nil: /readyz is
	// ready as soon as the server runs.
	Ready Readiness
	// Pprof serves net/http/pprof under /debug/pprof/. Its cmdline page
	// shows the arguments with the values of secret flags (password,
	// secret, token) replaced: they would otherwise be readable by anyone
	// who reaches the endpoint.
	Pprof bool
	// Problem, when set, says what keeps the process from working (it
	// cannot reach or log in to Kafka, say), "" when nothing does. /healthz
	// stays 200 and adds it; /readyz answers 503 with it.
	Problem func() string
	// Logger gets serve errors. Default slog.Default().
	Logger *slog.Logger
	// API, when set, serves every path under /v1/ (the history endpoints
	// of package history, say).
	API http.Handler
}

// Handler returns the endpoints' handler.
func Handler(o Options) http.Handler {
	if o.Gatherer == nil {
		o.Gatherer = prometheus.DefaultGatherer
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	problem := func() string {
		if o.Problem == nil {
			return ""
		}
		return o.Problem()
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
		if p := problem(); p != "" {
			fmt.Fprintln(w, "problem:", p)
		}
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if p := problem(); p != "" {
			http.Error(w, "not ready: "+p, http.StatusServiceUnavailable)
			return
		}
		if o.Ready != nil && !o.Ready.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if o.API != nil {
		mux.Handle("/v1/", o.API)
	}
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// cmdline is pprof.Cmdline with the values of secret flags redacted.
func cmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, strings.Join(RedactArgs(os.Args), "\x00"))
}

// RedactArgs returns args with the value of every flag whose name says it
// is secret (password, secret, token) replaced by "REDACTED", in both the
// "--flag value" and "--flag=value" forms.
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	copy(out, args)
	secret := func(flag string) bool {
		if !strings.HasPrefix(flag, "-") {
			return false
		}
		f := strings.ToLower(flag)
		return strings.Contains(f, "password") || strings.Contains(f, "secret") || strings.Contains(f, "token")
	}
	for i := 0; i < len(out); i++ {
		name, _, hasValue := strings.Cut(out[i], "=")
		if !secret(name) {
			continue
		}
		if hasValue {
			out[i] = name + "=REDACTED"
		} else if i+1 < len(out) {
			out[i+1] = "REDACTED"
			i++
		}
	}
	return out
}

// Server is the running HTTP endpoints.
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan error
}

// Start listens on o.Addr and serves until Close.
func Start(o Options) (*Server, error) {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("ops: listen on %s: %w", o.Addr, err)
	}
	s := &Server{
		srv:  &http.Server{Handler: Handler(o), ReadHeaderTimeout: 10 * time.Second},
		addr: ln.Addr(),
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		if err != nil {
			o.Logger.Error("ops: http server ended", "err", err)
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops the server, waiting up to 5s for requests in flight.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	return errors.Join(err, <-s.done)
}
