package folder_test

import (
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/aggtest"
	"github.com/kcqrs/kcqrs/aggregates/folder"
)

var (
	created = folder.FolderCreated{Name: "docs"}
	deleted = folder.FolderDeleted{}
	active  = &folder.Folder{Status: folder.StatusActive, Name: "docs"}
)

type Case = aggtest.Case[folder.Folder]

type shareFolder struct{}

func (shareFolder) CommandType() string { return "ShareFolder" }

func TestValidate(t *testing.T) {
	if err := folder.Type.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCreateFolder(t *testing.T) {
	longest := strings.Repeat("é", folder.MaxNameLen/2) + "x" // 255 bytes
	aggtest.Run(t, folder.Type, []Case{
		{Name: "creates", When: folder.CreateFolder{Name: "docs"}, Then: []aggregates.Event{created}, State: active, Version: 1},
		{Name: "longest name", When: folder.CreateFolder{Name: longest}, Then: []aggregates.Event{folder.FolderCreated{Name: longest}}},
		{Name: "name with spaces and dots", When: folder.CreateFolder{Name: "my .docs"}, Then: []aggregates.Event{folder.FolderCreated{Name: "my .docs"}}},
		{Name: "exists", Given: []aggregates.Event{created}, When: folder.CreateFolder{Name: "other"}, Reject: folder.CodeAlreadyExists, State: active},
		{Name: "deleted", Given: []aggregates.Event{created, deleted}, When: folder.CreateFolder{Name: "docs"}, Reject: folder.CodeAlreadyExists},
		{Name: "empty name", When: folder.CreateFolder{}, Reject: folder.CodeInvalidName},
		{Name: "name too long", When: folder.CreateFolder{Name: longest + "x"}, Reject: folder.CodeInvalidName},
		{Name: "slash", When: folder.CreateFolder{Name: "a/b"}, Reject: folder.CodeInvalidName},
		{Name: "only a slash", When: folder.CreateFolder{Name: "/"}, Reject: folder.CodeInvalidName},
	})
}

func TestRenameFolder(t *testing.T) {
	aggtest.Run(t, folder.Type, []Case{
		{
			Name:  "renames",
			Given: []aggregates.Event{created},
			When:  folder.RenameFolder{Name: "papers"},
			Then:  []aggregates.Event{folder.FolderRenamed{From: "docs", To: "papers"}},
			State: &folder.Folder{Status: folder.StatusActive, Name: "papers"},
		},
		{
			Name:  "renames again",
			Given: []aggregates.Event{created, folder.FolderRenamed{From: "docs", To: "papers"}},
			When:  folder.RenameFolder{Name: "docs"},
			Then:  []aggregates.Event{folder.FolderRenamed{From: "papers", To: "docs"}},
			State: active, Version: 3,
		},
		{Name: "same name", Given: []aggregates.Event{created}, When: folder.RenameFolder{Name: "docs"}, Reject: folder.CodeUnchanged},
		{Name: "never created", When: folder.RenameFolder{Name: "x"}, Reject: folder.CodeNotFound},
		{Name: "after delete", Given: []aggregates.Event{created, deleted}, When: folder.RenameFolder{Name: "x"}, Reject: folder.CodeDeleted},
		{Name: "empty name", Given: []aggregates.Event{created}, When: folder.RenameFolder{}, Reject: folder.CodeInvalidName},
		{Name: "name too long", Given: []aggregates.Event{created}, When: folder.RenameFolder{Name: strings.Repeat("x", folder.MaxNameLen+1)}, Reject: folder.CodeInvalidName},
		{Name: "slash", Given: []aggregates.Event{created}, When: folder.RenameFolder{Name: "docs/old"}, Reject: folder.CodeInvalidName},
	})
}

func TestDeleteFolder(t *testing.T) {
	aggtest.Run(t, folder.Type, []Case{
		{
			Name:  "deletes",
			Given: []aggregates.Event{created},
			When:  folder.DeleteFolder{},
			Then:  []aggregates.Event{deleted},
			State: &folder.Folder{Status: folder.StatusDeleted, Name: "docs"},
		},
		{Name: "never created", When: folder.DeleteFolder{}, Reject: folder.CodeNotFound},
		{Name: "twice", Given: []aggregates.Event{created, deleted}, When: folder.DeleteFolder{}, Reject: folder.CodeDeleted},
	})
}

func TestUnknownCommand(t *testing.T) {
	aggtest.Run(t, folder.Type, []Case{
		{Name: "new folder", When: shareFolder{}, Reject: aggregates.CodeUnknownCommand},
		{Name: "active folder", Given: []aggregates.Event{created}, When: shareFolder{}, Reject: aggregates.CodeUnknownCommand},
		{Name: "nil", When: nil, Reject: aggregates.CodeUnknownCommand},
	})
}

type unknownEvent struct{}

func (unknownEvent) EventType() string { return "FolderShared" }

func TestEvolveIgnoresUnknownEvents(t *testing.T) {
	if got := folder.Evolve(*active, unknownEvent{}); got != *active {
		t.Errorf("state %+v, want %+v", got, *active)
	}
}

func TestTestdata(t *testing.T) {
	aggtest.RunFile(t, folder.Type, "testdata/folder.txt")
}
