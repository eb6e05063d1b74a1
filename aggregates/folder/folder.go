// Package folder is a second, deliberately different aggregate type: a named
// folder that can be created, renamed and deleted. It exists to show (and
// test) that the runtime is generic over aggregate types.
package folder

import (
	"strings"

	"github.com/kcqrs/kcqrs/aggregates"
)

// Name is the wire name of the folder aggregate type.
const Name = "folder"

// Folder statuses. The zero value "" is a folder that was never created.
const (
	StatusActive  = "active"
	StatusDeleted = "deleted"
)

// MaxNameLen is the longest folder name, in bytes.
const MaxNameLen = 255

// Rejection codes of the folder aggregate. Unknown commands are rejected with
// aggregates.CodeUnknownCommand.
const (
	// CodeAlreadyExists: CreateFolder on a folder that exists or existed.
	CodeAlreadyExists = "already_exists"
	// CodeInvalidName: a name that is empty, longer than MaxNameLen bytes or
	// contains "/".
	CodeInvalidName = "invalid_name"
	// CodeNotFound: RenameFolder or DeleteFolder on a folder never created.
	CodeNotFound = "not_found"
	// CodeDeleted: RenameFolder or DeleteFolder on a deleted folder.
	CodeDeleted = "deleted"
	// CodeUnchanged: RenameFolder to the folder's current name.
	CodeUnchanged = "unchanged"
)

// Folder is the state of one folder.
type Folder struct {
	// Status is "" (never created), StatusActive or StatusDeleted.
	Status string `avro:"status"`
	// Name is the current name; a deleted folder keeps its last name.
	Name string `avro:"name"`
}

// CreateFolder creates the folder with a name.
type CreateFolder struct {
	Name string `avro:"name"`
}

// RenameFolder gives an active folder a new name.
type RenameFolder struct {
	Name string `avro:"name"`
}

// DeleteFolder deletes an active folder. Deletion is final.
type DeleteFolder struct{}

// CommandType implements aggregates.Command.
func (CreateFolder) CommandType() string { return "CreateFolder" }

// CommandType implements aggregates.Command.
func (RenameFolder) CommandType() string { return "RenameFolder" }

// CommandType implements aggregates.Command.
func (DeleteFolder) CommandType() string { return "DeleteFolder" }

// FolderCreated records the creation of the folder.
type FolderCreated struct {
	Name string `avro:"name"`
}

// FolderRenamed records a rename from one name to another.
type FolderRenamed struct {
	From string `avro:"from"`
	To   string `avro:"to"`
}

// FolderDeleted records the deletion of the folder.
type FolderDeleted struct{}

// EventType implements aggregates.Event.
func (FolderCreated) EventType() string { return "FolderCreated" }

// EventType implements aggregates.Event.
func (FolderRenamed) EventType() string { return "FolderRenamed" }

// EventType implements aggregates.Event.
func (FolderDeleted) EventType() string { return "FolderDeleted" }

// Type is the folder aggregate type. Its initial state is the zero Folder.
var Type = aggregates.Type[Folder]{
	Name:     Name,
	Decide:   Decide,
	Evolve:   Evolve,
	Commands: []aggregates.Command{CreateFolder{}, RenameFolder{}, DeleteFolder{}},
	Events:   []aggregates.Event{FolderCreated{}, FolderRenamed{}, FolderDeleted{}},
}

// Decide is the decide function of Type. Commands are expected as values (as
// listed in Type.Commands), not pointers.
func Decide(s Folder, cmd aggregates.Command) ([]aggregates.Event, error) {
	switch c := cmd.(type) {
	case CreateFolder:
		if s.Status != "" {
			return nil, aggregates.Reject(CodeAlreadyExists, "folder already exists (status %s)", s.Status)
		}
		if err := validName(c.Name); err != nil {
			return nil, err
		}
		return []aggregates.Event{FolderCreated(c)}, nil
	case RenameFolder:
		if err := mustBeActive(s); err != nil {
			return nil, err
		}
		if err := validName(c.Name); err != nil {
			return nil, err
		}
		if c.Name == s.Name {
			return nil, aggregates.Reject(CodeUnchanged, "folder is already named %q", s.Name)
		}
		return []aggregates.Event{FolderRenamed{From: s.Name, To: c.Name}}, nil
	case DeleteFolder:
		if err := mustBeActive(s); err != nil {
			return nil, err
		}
		return []aggregates.Event{FolderDeleted{}}, nil
	default:
		return nil, aggregates.UnknownCommand(Name, cmd)
	}
}

// validName returns an error (never a typed nil) unless name is a valid
// folder name.
func validName(name string) error {
	switch {
	case name == "":
		return aggregates.Reject(CodeInvalidName, "name must not be empty")
	case len(name) > MaxNameLen:
		return aggregates.Reject(CodeInvalidName, "name is %d bytes long, at most %d are allowed", len(name), MaxNameLen)
	case strings.Contains(name, "/"):
		return aggregates.Reject(CodeInvalidName, "name %q contains %q", name, "/")
	}
	return nil
}

func mustBeActive(s Folder) error {
	switch s.Status {
	case StatusActive:
		return nil
	case "":
		return aggregates.Reject(CodeNotFound, "folder was never created")
	default:
		return aggregates.Reject(CodeDeleted, "folder %q was deleted", s.Name)
	}
}

// Evolve is the evolve function of Type. Events it does not know leave the
// state unchanged.
func Evolve(s Folder, event aggregates.Event) Folder {
	switch e := event.(type) {
	case FolderCreated:
		return Folder{Status: StatusActive, Name: e.Name}
	case FolderRenamed:
		s.Name = e.To
	case FolderDeleted:
		s.Status = StatusDeleted
	}
	return s
}
