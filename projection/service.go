package projection

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ServiceConfig configures a Service: a projector and a query server in one
// process, as cmd/projector and the demo run them.
type ServiceConfig struct {
	// Projection configures the projector (its Names.Version is the version
	// it builds) and the server's views.
	Projection Config
	// Project runs the projector; false serves queries only.
	Project bool
	// ServeVersions are the versions the server answers from (see
	// ServerConfig.Versions). Default: the projector's version.
	ServeVersions []int
	// Addr is the HTTP listen address. Default 127.0.0.1:8088 (localhost
	// only: the API has no authentication). "" with NoHTTP set: no server.
	Addr string
	// NoHTTP runs no query server.
	NoHTTP bool
	// OpenPersonal is the server's ServerConfig.OpenPersonal.
	OpenPersonal func(aggregateType, aggregateID, value string) string
}

// Service is a running projector and query server.
type Service struct {
	Projector *Projector
	Server    *Server
	addr      string
	done      chan struct{}
	err       error
}

// StartService starts everything in the background; it returns once the
// HTTP listener is bound. Cancel ctx to stop it, then call Wait.
func StartService(ctx context.Context, cfg ServiceConfig) (*Service, error) {
	cfg.Projection.setDefaults()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8088"
	}
	if len(cfg.ServeVersions) == 0 {
		cfg.ServeVersions = []int{cfg.Projection.Names.Version}
	}
	s := &Service{done: make(chan struct{})}
	var runs []func(context.Context) error
	if cfg.Project {
		p, err := New(cfg.Projection)
		if err != nil {
			return nil, err
		}
		s.Projector = p
		runs = append(runs, p.Run)
	}
	if !cfg.NoHTTP {
		srv, err := NewServer(ctx, ServerConfig{Projection: cfg.Projection, Versions: cfg.ServeVersions, OpenPersonal: cfg.OpenPersonal})
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("projection: query server: %w", err)
		}
		s.Server, s.addr = srv, ln.Addr().String()
		hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
		runs = append(runs, srv.Run, func(ctx context.Context) error {
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = hs.Shutdown(sctx)
			}()
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("projection: query server: %w", err)
			}
			return nil
		})
	}
	ctx, cancel := context.WithCancel(ctx)
	errs := make(chan error, len(runs))
	for _, run := range runs {
		go func() {
			err := run(ctx)
			cancel() // one part failing stops the rest
			errs <- err
		}()
	}
	go func() {
		var all []error
		for range runs {
			if err := <-errs; err != nil && !errors.Is(err, context.Canceled) {
				all = append(all, err)
			}
		}
		cancel()
		s.err = errors.Join(all...)
		close(s.done)
	}()
	return s, nil
}

// Addr is the bound address of the query server ("" without one).
func (s *Service) Addr() string { return s.addr }

// Done is closed when everything has stopped.
func (s *Service) Done() <-chan struct{} { return s.done }

// Wait waits until everything has stopped and returns the first errors.
func (s *Service) Wait() error {
	<-s.done
	return s.err
}
