package projection

import (
	"fmt"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates/account"
)

// ownerPath is the listing path of owner, escaped as one path segment
// ("." and ".." as %2E: a server cleans them out of a path).
func ownerPath(owner string) string {
	seg := url.PathEscape(owner)
	if owner == "." || owner == ".." {
		seg = strings.ReplaceAll(owner, ".", "%2E")
	}
	return "/v1/owners/" + seg + "/accounts"
}

// TestHostileOwnersListExactlyTheirAccounts: owners that differ only by
// escaping or by a prefix ("a", "a/b", "a%2Fb", "a/", "a b", "..") each list
// exactly their own accounts, never another owner's, and paging with limit
// and after walks an owner's accounts once each, in id order. Bad paging
// parameters are a 400.
func TestHostileOwnersListExactlyTheirAccounts(t *testing.T) {
	e := newEnv(t)
	owners := []string{"a", "a/b", "a%2Fb", "a/", "a b", "a+b", "..", ".", "ä", "a\x00b", "x?y#z"}
	want := map[string][]string{}
	for i, o := range owners {
		for j := range 3 {
			id := fmt.Sprintf("o%02d-%d", i, j)
			want[o] = append(want[o], id)
			e.produce(rec(id, e.encode("account", id, 1, "", account.AccountOpened{Owner: o, Currency: "EUR"})))
		}
	}
	e.startProjector(e.config(t.TempDir(), 1))
	s := e.startServer(t.TempDir(), 1)
	h := s.Handler()
	eventually(t, "every owner's listing", func() (bool, string) {
		for _, o := range owners {
			var got OwnerResponse
			code := getJSON(h, ownerPath(o), &got)
			var ids []string
			for _, a := range got.Accounts {
				ids = append(ids, a.ID)
			}
			if code != 200 || got.Owner != o || !slices.Equal(ids, want[o]) {
				return false, fmt.Sprintf("owner %q: %d %q %v, want %v", o, code, got.Owner, ids, want[o])
			}
		}
		return true, ""
	})
	// Pages of one account each.
	var seen []string
	after := ""
	for range 10 {
		var got OwnerResponse
		path := ownerPath("a/b") + "?limit=1"
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		if code := getJSON(h, path, &got); code != 200 || len(got.Accounts) != 1 {
			t.Fatalf("GET %s: %d %+v", path, code, got)
		}
		seen = append(seen, got.Accounts[0].ID)
		if after = got.Next; after == "" {
			break
		}
	}
	if !slices.Equal(seen, want["a/b"]) {
		t.Fatalf("pages of a/b: %v, want %v", seen, want["a/b"])
	}
	var last OwnerResponse
	if code := getJSON(h, ownerPath("a/b")+"?after=zzz", &last); code != 200 || len(last.Accounts) != 0 || last.Next != "" {
		t.Fatalf("after the last id: %d %+v", code, last)
	}
	for _, q := range []string{"limit=0", "limit=-1", "limit=abc", "limit=1e3", "limit=99999999999999999999"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", ownerPath("a")+"?"+q, nil))
		if rec.Code != 400 {
			t.Errorf("?%s: %d %s, want 400", q, rec.Code, rec.Body)
		}
	}
}
