package projection

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestQueryAnswersAreJSONEverywhere: the query API's errors are
// {"error": ...} (docs/read-models.md), also for requests no route matches:
// an empty account id, owner or currency, an id with a raw slash, an
// unknown path, and other methods (405). Before, those got Go's plain-text
// "404 page not found" and "Method Not Allowed". None of these requests
// reaches a view, so the server needs none.
func TestQueryAnswersAreJSONEverywhere(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer((&Server{}).Handler())
	defer srv.Close()
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1/accounts/", 404},
		{"GET", "/v1/accounts/a/b", 404},
		{"GET", "/v1/owners//accounts", 404},
		{"GET", "/v1/owners/a/b/accounts", 404},
		{"GET", "/v1/totals/", 404},
		{"GET", "/v1/nothing", 404},
		{"GET", "/", 404},
		{"POST", "/v1/accounts/a1", 405},
		{"PUT", "/v1/owners/ann/accounts", 405},
		{"DELETE", "/v1/totals/EUR", 405},
		{"POST", "/v1/totals", 405},
		{"POST", "/v1/status", 405},
	} {
		req, err := http.NewRequest(c.method, srv.URL+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var obj map[string]any
		if resp.StatusCode != c.want || json.Unmarshal(body, &obj) != nil || obj["error"] == nil ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %q (%s), want %d with a JSON error", c.method, c.path, resp.StatusCode, body, resp.Header.Get("Content-Type"), c.want)
		}
	}
}
