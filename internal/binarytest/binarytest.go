package binarytest

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kcqrs/kcqrs/embedded"
)

// Env is a lookup of environment variables holding only kv (name, value,
// name, value...), as a binary's load function takes it.
func Env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// LoadCase is one case of a binary's settings test (RunLoad).
type LoadCase[S any] struct {
	Name  string
	Args  []string                    // the command line
	Env   func(string) (string, bool) // the environment (Env)
	Wants []string                    // substrings of the error; none: the settings are valid
	Check func(t *testing.T, st S)    // looks at valid settings
}

// RunLoad runs each case as a subtest: load its Args and Env; with Wants,
// loading must fail with an error containing each of them; without, it
// must succeed and Check is called on the settings.
func RunLoad[S any](t *testing.T, load func(args []string, env func(string) (string, bool)) (S, error), cases []LoadCase[S]) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			st, err := load(tt.Args, tt.Env)
			if len(tt.Wants) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tt.Check(t, st)
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.Wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// Embedded starts the embedded broker with o, closed when the test ends
// (after every binary Start ran, which the test started later).
func Embedded(t testing.TB, o embedded.Options) *kfake.Cluster {
	t.Helper()
	c, err := embedded.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Scrape gets url and returns the status code and the body; a request
// that fails returns 0 and the error's text (callers poll until it
// answers).
func Scrape(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Metric returns the sum of the samples of the series of a Prometheus text
// exposition whose name and labels match pattern, and whether any did.
func Metric(text, pattern string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + pattern + ` ([0-9.e+-]+)$`)
	var sum float64
	found := false
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		if v, err := strconv.ParseFloat(m[1], 64); err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}

// Running is a binary's run function started by Start.
type Running struct {
	// Base is the base URL ("http://host:port") of the address run
	// reported as started.
	Base string
	done chan struct{}
	err  error
}

// Done is closed when run has returned (Err is then its error).
func (r *Running) Done() <-chan struct{} { return r.done }

// Err is what run returned, once Done is closed.
func (r *Running) Err() error {
	<-r.done
	return r.err
}

// Start runs run in a goroutine until the test ends, and waits for it to
// report the address it serves on through started. A run that ends first
// fails the test. When the test ends, run's context is cancelled and an
// error it returns (or a run that does not stop within a minute) fails
// the test.
func Start(t testing.TB, run func(ctx context.Context, started func(addr string)) error) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	r := &Running{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = run(ctx, func(a string) { addrc <- a })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
			if r.err != nil {
				t.Error(r.err)
			}
		case <-time.After(time.Minute):
			t.Error("run did not stop within a minute of its cancel")
		}
	})
	select {
	case a := <-addrc:
		r.Base = "http://" + a
	case <-r.done:
		t.Fatalf("run ended before it started serving: %v", r.err)
	case <-time.After(2 * time.Minute):
		t.Fatal("run did not start serving within two minutes")
	}
	return r
}
