package history_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kcqrs/kcqrs/history"
	"github.com/kcqrs/kcqrs/wire"
)

// TestDeletedEventsAreReportedNotSkipped: records of an aggregate deleted
// from the events topic (retention, DeleteRecords) leave a history that no
// longer starts at version 1. The reader must say so (ErrIncomplete, 410),
// both with pointers indexed before the deletion and with an index rebuilt
// after it, never answer a shorter stream as if it were the whole one.
func TestDeletedEventsAreReportedNotSkipped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.h.StartProcessor("p1", "")
	e.send(cmd("account", "del-1", "OpenAccount", `{"owner":"Del","currency":"EUR"}`), wire.StatusAccepted)
	for range 3 {
		e.send(cmd("account", "del-1", "Deposit", `{"amount":5}`), wire.StatusAccepted)
	}
	want := e.scan()
	evs := want["account/del-1"]
	if len(evs) != 4 {
		t.Fatalf("events: %s", describe(evs))
	}
	e.openIndex(t.TempDir())
	e.indexed(want)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Delete versions 1 and 2.
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: e.h.Topic("events"), Partition: 0, At: evs[2].Offset})
	res, err := e.h.Admin().DeleteRecords(ctx, offs)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		got, err := e.r.History(ctx, "account", "del-1", 1, 0)
		if !errors.Is(err, history.ErrIncomplete) {
			t.Fatalf("%s: History = %s, %v; want ErrIncomplete", when, describe(got), err)
		}
		if _, err := e.r.StateAt(ctx, "account", "del-1", history.At{Version: 4}); !errors.Is(err, history.ErrIncomplete) {
			t.Fatalf("%s: StateAt: %v; want ErrIncomplete", when, err)
		}
		srv := httptest.NewServer(history.Handler(e.r))
		defer srv.Close()
		resp, err := http.Get(srv.URL + "/v1/streams/account/del-1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusGone {
			t.Fatalf("%s: stream answered %d, want 410", when, resp.StatusCode)
		}
		// From a version still there, the history is whole.
		got, err = e.r.History(ctx, "account", "del-1", 3, 0)
		if err != nil || len(got) != 2 || got[0].Version != 3 {
			t.Fatalf("%s: History from 3 = %s, %v", when, describe(got), err)
		}
	}
	check("indexed before the deletion")
	// A rebuilt index no longer has pointers to the deleted records.
	e.stop()
	e.openIndex(t.TempDir())
	for ctx.Err() == nil {
		if cp, ok, _ := e.idx.Checkpoint(0); ok && cp > evs[3].Offset {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	check("rebuilt after the deletion")
}
