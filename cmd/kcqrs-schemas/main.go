// Command kcqrs-schemas checks schema directories and releases schema
// versions, for `make schemas-check` and `make schemas-release`:
//
//	kcqrs-schemas check [--compatibility backward|forward|full] DIR...
//	kcqrs-schemas release DIR/Name.avsc...
//
// check loads each directory (its .avsc files and their history/) and fails,
// saying what broke, when the current schemas cannot read an older version
// (backward), when the previous release cannot read the current one
// (forward: rollbacks), or when a change looks like a rename without an
// alias. release copies a current schema to history/Name.v<N>.avsc, N being
// its version (one more than the highest in history/), and refuses to
// overwrite a released file.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kcqrs/kcqrs/schemas"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kcqrs-schemas:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  kcqrs-schemas check [--compatibility backward|forward|full] DIR...
  kcqrs-schemas release DIR/Name.avsc...`

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "check":
		return check(args[1:], out)
	case "release":
		if len(args) < 2 {
			return errors.New(usage)
		}
		for _, f := range args[1:] {
			dst, err := release(f)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "released %s as %s\n", f, dst)
		}
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

func check(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	mode := fs.String("compatibility", "backward", "backward (new code reads old data), forward (the previous release reads new data: safe rollbacks) or full (both)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := schemas.ParseCompatibility(*mode)
	if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("check: no schema directory given")
	}
	var errs []error
	for _, dir := range fs.Args() {
		set, err := schemas.Load(os.DirFS(filepath.Dir(filepath.Clean(dir))), filepath.Base(filepath.Clean(dir)))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dir, err))
			continue
		}
		if err := set.CheckCompatibility(c); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s):\n%w", dir, c, err))
		}
		for _, w := range set.RenameWarnings() {
			errs = append(errs, fmt.Errorf("%s: %s", dir, w))
		}
		if len(errs) == 0 {
			fmt.Fprintf(out, "%s: %d records compatible (%s)\n", dir, len(set.Names()), c)
		}
	}
	return errors.Join(errs...)
}

// release copies file (DIR/Name.avsc) to DIR/history/Name.v<N>.avsc, N the
// current version: one more than the highest version in history/.
func release(file string) (string, error) {
	dir, base := filepath.Split(file)
	name, ok := strings.CutSuffix(base, ".avsc")
	if !ok || strings.Contains(name, ".") {
		return "", fmt.Errorf("release %s: want DIR/Name.avsc, a current schema", file)
	}
	text, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("release: %w", err)
	}
	hist := filepath.Join(dir, schemas.HistoryDir)
	entries, err := os.ReadDir(hist)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("release: %w", err)
	}
	highest := 0
	for _, e := range entries {
		v, ok := strings.CutPrefix(e.Name(), name+".v")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSuffix(v, ".avsc")); err == nil && n > highest {
			highest = n
		}
		if prev, err := os.ReadFile(filepath.Join(hist, e.Name())); err == nil && string(prev) == string(text) {
			return "", fmt.Errorf("release %s: already released as %s (change it first, then release the next version)", file, filepath.Join(hist, e.Name()))
		}
	}
	if err := os.MkdirAll(hist, 0o755); err != nil {
		return "", fmt.Errorf("release: %w", err)
	}
	dst := filepath.Join(hist, fmt.Sprintf("%s.v%d.avsc", name, highest+1))
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644) // never overwrite a released file
	if err != nil {
		return "", fmt.Errorf("release: %w", err)
	}
	if _, err := f.Write(text); err != nil {
		f.Close()
		return "", fmt.Errorf("release: %w", err)
	}
	return dst, f.Close()
}
