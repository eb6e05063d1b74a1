package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/projection"
)

// startProjection runs the read models and their query API beside the
// demo's processor.
func startProjection(ctx context.Context, brokers []string, stateDir, addr string, logOut io.Writer, openPersonal func(string, string, string) string, personal *projection.Personal) (*projection.Service, error) {
	reg, err := examples.Registry()
	if err != nil {
		return nil, err
	}
	return projection.StartService(ctx, projection.ServiceConfig{
		Project:      true,
		Addr:         addr,
		OpenPersonal: openPersonal,
		Projection: projection.Config{
			Brokers: brokers, StateDir: stateDir, Registry: reg, Personal: personal,
			Logger: slog.New(slog.NewTextHandler(logOut, nil)),
		},
	})
}

// printReadModel reads the demo account back from the query API, waiting
// for the version of its last accepted command (read-your-writes), and the
// EUR total once the read models have caught up with every committed event
// (the total depends on all accounts, not on one version).
func printReadModel(ctx context.Context, svc *projection.Service, acc string, version int64) {
	addr := svc.Addr()
	fmt.Printf("\nread model (query API on http://%s):\n", addr)
	show := func(path string) {
		code, body, err := get(ctx, "http://"+addr+path)
		if err != nil {
			fmt.Printf("  GET %s: %v\n", path, err)
			return
		}
		fmt.Printf("  GET %s -> %d %s\n", path, code, body)
	}
	show(fmt.Sprintf("/v1/accounts/%s?min_version=%d&wait=10s", acc, version))
	if err := waitCaughtUp(ctx, svc.Server, 20*time.Second); err != nil {
		fmt.Printf("  (the totals below may be behind: %v)\n", err)
	}
	show("/v1/totals/EUR")
}

// waitCaughtUp waits until the server's read models have caught up with
// every event committed before the call.
func waitCaughtUp(ctx context.Context, srv *projection.Server, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		ok, err := srv.CheckCaughtUp(ctx)
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("not caught up in %s: %w", limit, err)
			}
			return fmt.Errorf("not caught up in %s", limit)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	c := http.Client{Timeout: 15 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body)), err
}
