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
func startProjection(ctx context.Context, brokers []string, stateDir, addr string, logOut io.Writer) (*projection.Service, error) {
	reg, err := examples.Registry()
	if err != nil {
		return nil, err
	}
	return projection.StartService(ctx, projection.ServiceConfig{
		Project: true,
		Addr:    addr,
		Projection: projection.Config{
			Brokers: brokers, StateDir: stateDir, Registry: reg,
			Logger: slog.New(slog.NewTextHandler(logOut, nil)),
		},
	})
}

// printReadModel reads the demo account back from the query API, waiting
// for the version of its last accepted command (read-your-writes).
func printReadModel(ctx context.Context, addr, acc string, version int64) {
	fmt.Printf("\nread model (query API on http://%s):\n", addr)
	for _, path := range []string{
		fmt.Sprintf("/v1/accounts/%s?min_version=%d&wait=10s", acc, version),
		"/v1/totals/EUR",
	} {
		code, body, err := get(ctx, "http://"+addr+path)
		// The owner and currency models follow the account model a moment
		// later (through their intermediate topics): give them that moment.
		for wait := time.Now().Add(10 * time.Second); err == nil && code == http.StatusNotFound && time.Now().Before(wait); {
			time.Sleep(100 * time.Millisecond)
			code, body, err = get(ctx, "http://"+addr+path)
		}
		if err != nil {
			fmt.Printf("  GET %s: %v\n", path, err)
			continue
		}
		fmt.Printf("  GET %s -> %d %s\n", path, code, body)
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
