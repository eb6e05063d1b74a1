package schemas

import (
	"testing"
)

// FuzzNewCodec: a schema file is parsed twice (goavro and our own model for
// the canonical form and the fingerprint). Whatever the text, the result is
// a codec or an error, never a panic, and a codec's fingerprint is that of
// its canonical form.
func FuzzNewCodec(f *testing.F) {
	for _, c := range allSets(f).Codecs() {
		f.Add([]byte(c.Source()))
	}
	f.Add([]byte(`{"type":"record","name":"R","fields":[{"name":"r","type":["null","R"]}]}`))
	f.Add([]byte(`{"type":"record","name":"a.R","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}},{"name":"f","type":{"type":"fixed","name":"F","size":2}},{"name":"m","type":{"type":"map","values":"long"}}]}`))
	f.Add([]byte(`"string"`))
	f.Fuzz(func(t *testing.T, text []byte) {
		c, err := newCodec("fuzz.avsc", text)
		if err != nil {
			return
		}
		if c.Fingerprint() != rabin([]byte(c.Schema())) {
			t.Fatalf("fingerprint %x is not that of the canonical form %s", c.Fingerprint(), c.Schema())
		}
	})
}
