package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
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
	// Pprof serves net/http/pprof under /debug/pprof/.
	Pprof bool
	// Logger gets serve errors. Default slog.Default().
	Logger *slog.Logger
}

// Handler returns the endpoints' handler.
func Handler(o Options) http.Handler {
	if o.Gatherer == nil {
		o.Gatherer = prometheus.DefaultGatherer
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if o.Ready != nil && !o.Ready.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
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
