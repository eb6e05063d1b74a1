package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyDir copies the .avsc files of src (and its history/) into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	for _, sub := range []string{"", "history"} {
		entries, _ := os.ReadDir(filepath.Join(src, sub))
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(src, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(dst, sub), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dst, sub, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestReleaseAndCheck follows the README's "Changing your schemas" on the
// example account schemas: release computes the next version and never
// overwrites a released file (Account already has a v1 in history/), a
// field added with a default passes every compatibility mode, and a change
// an older release cannot read fails forward mode only.
func TestReleaseAndCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "account")
	copyDir(t, "../../schemas/account", dir)
	acc := filepath.Join(dir, "Account.avsc")
	before, _ := os.ReadFile(filepath.Join(dir, "history", "Account.v1.avsc"))
	if err := run([]string{"release", acc}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "history", "Account.v1.avsc")); string(after) != string(before) {
		t.Fatal("release overwrote the released Account.v1.avsc")
	}
	if _, err := os.Stat(filepath.Join(dir, "history", "Account.v2.avsc")); err != nil {
		t.Fatalf("release did not write the next version: %v", err)
	}
	if err := run([]string{"release", acc}, io.Discard); err == nil || !strings.Contains(err.Error(), "already released") {
		t.Fatalf("releasing the same schema twice: %v", err)
	}

	mw := filepath.Join(dir, "MoneyWithdrawn.avsc")
	if err := run([]string{"release", mw}, io.Discard); err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(mw)
	added := strings.Replace(string(text), `"fields": [`, `"fields": [
    {"name": "channel", "type": "string", "default": "unknown"},`, 1)
	if added == string(text) {
		t.Fatal("could not edit MoneyWithdrawn.avsc")
	}
	if err := os.WriteFile(mw, []byte(added), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"backward", "forward", "full"} {
		if err := run([]string{"check", "--compatibility", mode, dir}, io.Discard); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
	}
	// A required field (no default): old data lacks it, old code could
	// read new data; then an int widened to long the other way round.
	narrowed := strings.Replace(added, `"default": "unknown"`, `"default": "unknown"}, {"name": "fee", "type": "long"`, 1)
	if err := os.WriteFile(mw, []byte(narrowed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"check", dir}, io.Discard); err == nil || !strings.Contains(err.Error(), "MoneyWithdrawn.fee") {
		t.Fatalf("backward check of a field without a default: %v", err)
	}
}

// TestForwardModeCatchesRollbackHazards: a change new code reads but the
// previous release cannot (a long widened to double) passes backward and
// fails forward, naming the record and the previous release's file.
func TestForwardModeCatchesRollbackHazards(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "account")
	copyDir(t, "../../schemas/account", dir)
	mw := filepath.Join(dir, "MoneyWithdrawn.avsc")
	if err := run([]string{"release", mw}, io.Discard); err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(mw)
	widened := strings.Replace(string(text), `{"name": "amount", "type": "long"`, `{"name": "amount", "type": "double"`, 1)
	if widened == string(text) {
		t.Fatal("could not edit MoneyWithdrawn.avsc")
	}
	if err := os.WriteFile(mw, []byte(widened), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"check", "--compatibility", "backward", dir}, io.Discard); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"check", "--compatibility", "forward", dir}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "MoneyWithdrawn v2") || !strings.Contains(err.Error(), "MoneyWithdrawn.v1.avsc") {
		t.Fatalf("forward: %v", err)
	}
}
