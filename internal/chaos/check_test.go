package chaos

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/snapshots"
)

// The store check compares a store with the changelog below its
// checkpoint: a store holding a value the changelog never had there, or
// missing one, is reported; a store that is merely behind is not.
func TestCheckStore(t *testing.T) {
	recs := []changelogRec{
		{0, "a", []byte("a1")},
		{1, "b", []byte("b1")},
		{3, "a", []byte("a2")}, // offset 2 was a transaction marker
		{4, "c", []byte("c1")},
	}
	cases := []struct {
		name    string
		put     map[string]string
		cp      int64
		wantErr string
	}{
		{"behind but equal below its checkpoint", map[string]string{"a": "a1", "b": "b1"}, 3, ""},
		{"at the end", map[string]string{"a": "a2", "b": "b1", "c": "c1"}, 5, ""},
		{"ahead of its checkpoint", map[string]string{"a": "a2", "b": "b1"}, 3, "a differs"},
		{"missing a key", map[string]string{"a": "a2"}, 4, "b missing"},
		{"a key the changelog lacks", map[string]string{"a": "a1", "b": "b1", "x": "?"}, 2, "x not in the changelog"},
	}
	r := &run{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			st, err := snapshots.Open(dir, snapshots.Options{})
			if err != nil {
				t.Fatal(err)
			}
			b := st.NewBatch()
			for k, v := range c.put {
				b.Put([]byte(k), []byte(v))
			}
			b.SetCheckpoint(c.cp)
			if err := st.Apply(b); err != nil {
				t.Fatal(err)
			}
			st.Close()
			_, _, err = r.checkStore(dir, upTo(recs))
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("unexpected violation: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("got %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
}
