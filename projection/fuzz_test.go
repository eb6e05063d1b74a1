package projection

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeAccount: the downstream groups decode whatever arrives on their
// input topics; bad bytes must give an error (a dead letter), never a panic
// or an entry without id and version.
func FuzzDecodeAccount(f *testing.F) {
	good, _ := json.Marshal(Account{ID: "a", Owner: "o", Currency: "EUR", Status: "open", Balance: 3, Version: 2})
	f.Add(good)
	f.Add([]byte(`{"id":"a"}`))
	f.Add([]byte(`{"id":"","version":3}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"balance":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := decodeAccount(data)
		if err == nil && (a.ID == "" || a.Version <= 0) {
			t.Fatalf("accepted %q as %+v", data, a)
		}
	})
}
