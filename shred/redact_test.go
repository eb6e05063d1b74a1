package shred

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestDataKeyNeverPrinted: a data key that reaches a log line, an error
// message or a JSON dump by mistake (%v of a struct holding it, slog, json)
// shows its id, never its key bytes in any usual form.
func TestDataKeyNeverPrinted(t *testing.T) {
	k, err := NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		out = append(out, fmt.Sprintf(verb, k), fmt.Sprintf(verb, &k), fmt.Sprintf(verb, struct{ K DataKey }{k}))
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "key", k, "ptr", &k)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "key", k, "ptr", &k)
	out = append(out, logged.String())
	if js, err := json.Marshal(struct{ K DataKey }{k}); err == nil {
		out = append(out, string(js))
	}
	secret := []string{hex.EncodeToString(k.Key[:]), strings.ToUpper(hex.EncodeToString(k.Key[:])),
		base64.StdEncoding.EncodeToString(k.Key[:]), strings.Trim(fmt.Sprint(k.Key[:]), "[]"), strings.Trim(fmt.Sprint([]int{int(k.Key[0]), int(k.Key[1]), int(k.Key[2]), int(k.Key[3])}), "[]"),
		fmt.Sprintf("%q", k.Key[:])[1:20]}
	for _, o := range out {
		for _, s := range secret {
			if strings.Contains(o, s) {
				t.Fatalf("key material printed: %q contains %q", o, s)
			}
		}
	}
	if !strings.Contains(fmt.Sprint(k), hex.EncodeToString(k.ID[:])) {
		t.Fatalf("the id is not shown: %v", k)
	}
}
