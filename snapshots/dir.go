package snapshots

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// PartitionDir returns the directory of the store of one partition:
// stateDir/<topic>/partition-<n>. A valid Kafka topic name (letters, digits,
// '.', '_', '-', and not "." or "..") is used as is; any other byte is escaped
// as %XX, so no topic name can point outside stateDir.
func PartitionDir(stateDir, topic string, partition int32) string {
	return filepath.Join(stateDir, escapeTopic(topic), "partition-"+strconv.FormatInt(int64(partition), 10))
}

func escapeTopic(topic string) string {
	if topic == "" {
		return "%"
	}
	if topic == "." || topic == ".." {
		return strings.Repeat("%2E", len(topic))
	}
	var b strings.Builder
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// Remove deletes the store in dir and everything in it. A missing dir is not
// an error. Remove refuses a store that is open (in this process or another),
// and a non-empty directory that does not look like a Pebble store, so that a
// wrong path cannot delete unrelated files.
func Remove(dir string) error {
	dir, err := absDir(dir)
	if err != nil {
		return fmt.Errorf("snapshots: remove: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("snapshots: remove: %w", err)
	}
	if len(entries) > 0 && !looksLikeStore(entries) {
		return fmt.Errorf("snapshots: remove: %s does not look like a store; not removing it", dir)
	}
	// Holding Pebble's directory lock while removing keeps Open out, and
	// fails if the store is open.
	lock, err := pebble.LockDirectory(dir, vfs.Default)
	if err != nil {
		return fmt.Errorf("snapshots: remove %s: store in use: %w", dir, err)
	}
	err = os.RemoveAll(dir)
	if cerr := lock.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("snapshots: remove: %w", err)
	}
	return nil
}

// looksLikeStore reports whether a directory listing has the files Pebble
// creates first (the lock, the options file or the manifest).
func looksLikeStore(entries []os.DirEntry) bool {
	for _, e := range entries {
		name := e.Name()
		if name == "LOCK" || strings.HasPrefix(name, "OPTIONS-") || strings.HasPrefix(name, "MANIFEST-") ||
			strings.HasPrefix(name, "marker.") {
			return true
		}
	}
	return false
}

// absDir makes dir absolute and clean, so that Open and Remove name a store's
// lock file alike: Pebble detects a lock held by its own process by that name.
func absDir(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("empty directory name")
	}
	return filepath.Abs(dir)
}
