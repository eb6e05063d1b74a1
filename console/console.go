package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/topology"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure a console.
type Options struct {
	// ClientOpts connect to the cluster (seed brokers, TLS, SASL).
	// Required.
	ClientOpts []kgo.Opt
	// Processor is the processors' config as far as the console needs it:
	// Group and Topics (defaults filled in as the processor does) and
	// Partitions for the description.
	Processor topology.Config
	// Registry decodes snapshots and lists the aggregate types. Required.
	Registry *topology.Registry
	// OpsAddrs are the workers' ops endpoints (host:port of /metrics),
	// scraped for transactions, readiness and restore progress. None: the
	// workers page says so.
	OpsAddrs []string
	// AllowRedrive shows the re-drive button and accepts its POST.
	// Default false: read-only.
	AllowRedrive bool
	// Timeout bounds the cluster requests of one page. Default 15s.
	Timeout time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Console serves the pages. It holds one Kafka client; Close it.
type Console struct {
	o     Options
	desc  topology.Description
	topic topology.Topics
	group string
	cl    *kgo.Client
	adm   *kadm.Client
	pages map[string]*template.Template
	http  *http.Client
}

// New connects a console (the client connects lazily: New does not wait
// for the cluster).
func New(o Options) (*Console, error) {
	if o.Registry == nil {
		return nil, errors.New("console: a Registry is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	desc := topology.Describe(o.Processor, o.Registry)
	cl, err := kgo.NewClient(o.ClientOpts...)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c := &Console{o: o, desc: desc, topic: desc.Topology, group: desc.Group, cl: cl, adm: kadm.NewClient(cl),
		pages: map[string]*template.Template{}, http: &http.Client{Timeout: 5 * time.Second}}
	funcs := template.FuncMap{
		"join": strings.Join,
		"time": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"navs": func() []navItem { return navItems },
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if strings.HasSuffix(n, "/layout.html") {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			cl.Close()
			return nil, fmt.Errorf("console: template %s: %w", n, err)
		}
		c.pages[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	return c, nil
}

// Close closes the Kafka client.
func (c *Console) Close() { c.cl.Close() }

// Handler serves the console.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/topology", http.StatusFound)
	})
	mux.HandleFunc("GET /topology", c.topologyPage)
	mux.HandleFunc("GET /workers", c.workersPage)
	mux.HandleFunc("GET /groups", c.groupsPage)
	mux.HandleFunc("GET /deadletters", c.deadLettersPage)
	mux.HandleFunc("POST /deadletters/redrive", c.redrive)
	mux.HandleFunc("GET /aggregate", c.aggregatePage)
	// A POST from another site (a forged re-drive) is refused.
	return securityHeaders(http.NewCrossOriginProtection().Handler(mux))
}

// securityHeaders: no scripts at all, and no framing (the re-drive form
// must not be clickjacked).
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'none'; frame-ancestors 'none'")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

type navItem struct{ Path, Label string }

var navItems = []navItem{
	{"topology", "Topology"}, {"workers", "Workers"}, {"groups", "Consumer groups"},
	{"deadletters", "Dead letters"}, {"aggregate", "Aggregate inspector"},
}

// page is what every template gets.
type page struct {
	Title string
	Nav   string
	// Error is shown at the top when the cluster could not answer.
	Error string
	Data  any
}

func (c *Console) render(w http.ResponseWriter, status int, name string, p page) {
	t := c.pages[name]
	var b strings.Builder
	if err := t.Execute(&b, p); err != nil {
		c.o.Logger.Error("console: render", "page", name, "err", err)
		http.Error(w, "console: render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

func (c *Console) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), c.o.Timeout)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
