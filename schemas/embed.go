package schemas

import (
	"embed"
	"io/fs"
)

//go:embed kcqrs account folder
var files embed.FS

// The embedded schema files. Files holds the directories kcqrs (envelopes),
// account and folder (the example domains); Envelopes, Account and Folder are
// those directories on their own, for Load(Envelopes, ".").
var (
	Files     fs.FS = files
	Envelopes fs.FS = mustSub("kcqrs")
	Account   fs.FS = mustSub("account")
	Folder    fs.FS = mustSub("folder")
)

func mustSub(dir string) fs.FS {
	sub, err := fs.Sub(files, dir)
	if err != nil {
		panic(err) // only for an invalid constant path
	}
	return sub
}

// LoadEnvelopes loads kcqrs.Reply (with enum kcqrs.ReplyStatus), kcqrs.Event
// and kcqrs.Snapshot (with records kcqrs.RecentCommand and kcqrs.RecentReply), whose Go forms are
// wire.Reply, wire.Event and wire.Snapshot.
func LoadEnvelopes() (*Set, error) { return Load(files, "kcqrs") }

// LoadAccount loads the schemas of the bank-account example domain
// (namespace kcqrs.example.account).
func LoadAccount() (*Set, error) { return Load(files, "account") }

// LoadFolder loads the schemas of the folder example domain (namespace
// kcqrs.example.folder).
func LoadFolder() (*Set, error) { return Load(files, "folder") }
