package history_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestPersonalFieldsOpenedAndErased: with a master key, the events topic
// holds only ciphertext of personal fields. The history endpoints show
// them as the processor's own state does: the plaintext while the
// aggregate lives (so the state at the latest version equals the
// snapshot's), and shred.Erased after an erasure, with the rest of the
// history still folding. Never the sealed text, never a failure.
func TestPersonalFieldsOpenedAndErased(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	mk, err := shred.NewMasterKey(bytes.Repeat([]byte{7}, shred.KeyLen))
	if err != nil {
		t.Fatal(err)
	}
	e.h.StartProcessor("p1", "", func(c *topology.Config) { c.Personal = mk })
	e.send(cmd("account", "pii-1", "OpenAccount", `{"owner":"Anna Secret","currency":"EUR"}`), wire.StatusAccepted)
	e.send(cmd("account", "pii-1", "Deposit", `{"amount":10}`), wire.StatusAccepted)
	svc, err := history.StartService(history.ServiceConfig{
		StateDir: t.TempDir(), Topic: e.h.Topic("events"), ClientOpts: e.clientOpts(), Registry: e.h.Registry,
		Personal: mk, KeysTopic: e.h.Topics.Keys,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	owner := func() (stream, state string) {
		page, err := svc.Reader().Page(ctx, "account", "pii-1", 1, 10)
		if err != nil || len(page.Events) != 2 {
			return "", ""
		}
		var ev struct{ Owner string }
		_ = json.Unmarshal(page.Events[0].Payload, &ev)
		view, err := svc.Reader().View(ctx, "account", "pii-1", history.At{})
		if err != nil || view.Version != 2 {
			return ev.Owner, ""
		}
		var st struct {
			Owner   string
			Balance int64
		}
		_ = json.Unmarshal(view.State, &st)
		if st.Balance != 10 {
			t.Fatalf("balance %d in %s", st.Balance, view.State)
		}
		return ev.Owner, st.Owner
	}
	poll := func(what string, ok func(stream, state string) bool) {
		t.Helper()
		var s1, s2 string
		for ctx.Err() == nil {
			if s1, s2 = owner(); ok(s1, s2) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s: stream owner %q, state owner %q", what, s1, s2)
	}
	poll("plaintext", func(a, b string) bool { return a == "Anna Secret" && b == "Anna Secret" })

	prod, err := kgo.NewClient(e.clientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if _, err := topology.EraseSubject(ctx, prod, e.h.Topics, mk, "account", "pii-1", "erase-pii-1"); err != nil {
		t.Fatal(err)
	}
	poll("erased", func(a, b string) bool {
		if strings.Contains(a+b, "Anna") {
			return false
		}
		if strings.HasPrefix(a, "kcqrs:") || strings.HasPrefix(b, "kcqrs:") {
			t.Fatalf("sealed text shown: %q %q", a, b)
		}
		return a == shred.Erased && b == shred.Erased
	})
	// At an earlier version too: the erased value, the rest folded.
	view, err := svc.Reader().View(ctx, "account", "pii-1", history.At{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Owner   string
		Balance int64
	}
	if err := json.Unmarshal(view.State, &st); err != nil || st.Owner != shred.Erased || st.Balance != 0 || view.Version != 1 {
		t.Fatalf("state at version 1 after the erasure: %s (%v)", view.State, err)
	}
}
