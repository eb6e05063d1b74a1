package topology_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/kcqrs/kcqrs/topology"
)

// SignCommand is the documented construction (docs/wire-contract.md), and no
// two commands whose fields merely split differently sign the same.
func TestSignCommand(t *testing.T) {
	key := []byte("k")
	mac := hmac.New(sha256.New, key)
	for _, f := range []string{"id", "account", "bob", "CreditForTransfer", "\xc3\x01value"} {
		mac.Write([]byte{0, 0, 0, 0, 0, 0, 0, byte(len(f))})
		mac.Write([]byte(f))
	}
	want := hex.EncodeToString(mac.Sum(nil))
	if got := string(topology.SignCommand(key, "id", "account", "bob", "CreditForTransfer", []byte("\xc3\x01value"))); got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
	a := topology.SignCommand(key, "ab", "account", "c", "CreditForTransfer", nil)
	b := topology.SignCommand(key, "a", "account", "bc", "CreditForTransfer", nil)
	c := topology.SignCommand([]byte("other"), "ab", "account", "c", "CreditForTransfer", nil)
	if string(a) == string(b) || string(a) == string(c) {
		t.Fatal("different commands or keys sign the same")
	}
}
