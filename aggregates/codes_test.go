package aggregates_test

import (
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/aggregates/folder"
)

// Both example types are usable through the runtime's type-erased view.
var (
	_ aggregates.Handler = account.Type
	_ aggregates.Handler = folder.Type
)

type shout struct{}

func (shout) CommandType() string { return "Shout" }

func TestUnknownCommand(t *testing.T) {
	r := aggregates.UnknownCommand("folder", shout{})
	if r.Code != aggregates.CodeUnknownCommand || !strings.Contains(r.Message, `"Shout"`) || !strings.Contains(r.Message, "folder") {
		t.Errorf("got %+v", r)
	}
	if r := aggregates.UnknownCommand("folder", nil); r.Code != aggregates.CodeUnknownCommand || !strings.Contains(r.Message, "nil command") {
		t.Errorf("nil command: %+v", r)
	}
	var err error = r
	if got, ok := aggregates.AsRejection(err); !ok || got != r {
		t.Errorf("AsRejection(%v) = %v, %v", err, got, ok)
	}
}

func TestHandlersRejectWrongStateType(t *testing.T) {
	for _, h := range []aggregates.Handler{account.Type, folder.Type} {
		if _, err := h.HandleCommand(42, nil); err == nil {
			t.Errorf("%s: a state of the wrong type was accepted", h.AggregateType())
		}
	}
}
