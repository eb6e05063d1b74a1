package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Entry describes one setting.
type Entry struct {
	Flag    string // without dashes: "commit-interval"
	Env     string // "KCQRS_COMMIT_INTERVAL"
	Default string // as shown in help and docs; "" for none
	Usage   string
	Group   string
	// Secret settings never show their value in help or docs.
	Secret bool
}

// Set is a group of settings of one program.
type Set struct {
	name    string
	prefix  string
	fs      *flag.FlagSet
	entries []Entry
	group   string
	errs    []error
	intro   string
	noEnv   bool
}

// DefaultPrefix is the environment prefix of every kcqrs binary.
const DefaultPrefix = "KCQRS_"

// New returns an empty set for the program name. Its variables are prefixed
// with prefix (DefaultPrefix when "").
func New(name, prefix string) *Set {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	s := &Set{name: name, prefix: prefix, fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	s.fs.SetOutput(io.Discard)
	return s
}

// Intro sets the text help prints before the settings.
func (s *Set) Intro(text string) { s.intro = text }

// Group starts a titled group: the settings bound after it are listed under
// the title in help and docs.
func (s *Set) Group(title string) { s.group = title }

// FlagsOnly makes the settings bound after it flags without an environment
// variable: a command's arguments (an id, an amount), which a variable left
// in the environment must never supply.
func (s *Set) FlagsOnly() { s.noEnv = true }

// EnvName is the variable of a flag name.
func (s *Set) EnvName(flagName string) string {
	return s.prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// recording records a value's parse error instead of stopping the parse, so
// every bad value is reported at once.
type recording struct {
	flag.Value
	s    *Set
	name string
}

func (r recording) Set(v string) error {
	if err := r.Value.Set(v); err != nil {
		r.s.errs = append(r.s.errs, fmt.Errorf("--%s=%q: %w", r.name, v, unwrapParse(err)))
	}
	return nil
}

func (r recording) IsBoolFlag() bool {
	b, ok := r.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// unwrapParse turns strconv's verbose errors into their reason.
func unwrapParse(err error) error {
	var ne interface{ Unwrap() error }
	if errors.As(err, &ne) && ne.Unwrap() != nil {
		return ne.Unwrap()
	}
	return err
}

// Var binds any flag.Value. def is the default as documented.
func (s *Set) Var(v flag.Value, name, def, usage string) {
	s.fs.Var(recording{Value: v, s: s, name: name}, name, usage)
	env := s.EnvName(name)
	if s.noEnv {
		env = ""
	}
	s.entries = append(s.entries, Entry{Flag: name, Env: env, Default: def, Usage: usage, Group: s.group})
}

// Secret binds a string whose value never appears in help or docs.
func (s *Set) Secret(p *string, name, usage string) {
	s.String(p, name, "", usage)
	s.entries[len(s.entries)-1].Secret = true
}

// String binds a string.
func (s *Set) String(p *string, name, def, usage string) {
	*p = def
	s.Var((*stringValue)(p), name, def, usage)
}

// Int binds an int.
func (s *Set) Int(p *int, name string, def int, usage string) {
	*p = def
	s.Var((*intValue)(p), name, fmt.Sprint(def), usage)
}

// Int64 binds an int64; sizes accept KiB, MiB and GiB suffixes.
func (s *Set) Int64(p *int64, name string, def int64, usage string) {
	*p = def
	s.Var((*int64Value)(p), name, fmt.Sprint(def), usage)
}

// Bytes binds a byte size: a number with an optional KiB, MiB or GiB suffix.
func (s *Set) Bytes(p *int64, name string, def int64, usage string) {
	*p = def
	s.Var((*bytesValue)(p), name, formatBytes(def), usage)
}

// Duration binds a time.Duration ("100ms", "10s").
func (s *Set) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	s.Var((*durationValue)(p), name, def.String(), usage)
}

// Bool binds a bool; a bare --name means true.
func (s *Set) Bool(p *bool, name string, def bool, usage string) {
	*p = def
	s.Var((*boolValue)(p), name, fmt.Sprint(def), usage)
}

// List binds a comma-separated list.
func (s *Set) List(p *[]string, name string, def []string, usage string) {
	*p = def
	s.Var((*listValue)(p), name, strings.Join(def, ","), usage)
}

// Entries lists the settings in the order they were bound.
func (s *Set) Entries() []Entry { return append([]Entry(nil), s.entries...) }

// ErrHelp is returned by Parse when -h or --help was given; the caller
// prints Usage and exits 0.
var ErrHelp = flag.ErrHelp

// Parse reads the environment (through lookup; os.LookupEnv when nil), then
// args. It returns every problem found, joined, or ErrHelp. Positional
// arguments are left in Args.
func (s *Set) Parse(args []string, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	s.errs = nil
	for _, e := range s.entries {
		if e.Env == "" {
			continue
		}
		v, ok := lookup(e.Env)
		if !ok {
			continue
		}
		if err := s.fs.Lookup(e.Flag).Value.(recording).Value.Set(v); err != nil {
			shown := v
			if e.Secret {
				shown = "***"
			}
			s.errs = append(s.errs, fmt.Errorf("%s=%q: %w", e.Env, shown, unwrapParse(err)))
		}
	}
	if err := s.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ErrHelp
		}
		s.errs = append(s.errs, err)
	}
	return errors.Join(s.errs...)
}

// ExitOnError ends a program whose configuration did not load: on ErrHelp
// it prints the help to stdout and exits 0; on any other error it lists every
// problem on stderr, one per line, and exits 2. A nil err returns.
func (s *Set) ExitOnError(err error) {
	switch {
	case err == nil:
		return
	case errors.Is(err, ErrHelp):
		s.Usage(os.Stdout)
		os.Exit(0)
	}
	problems := "  - " + strings.Join(strings.Split(err.Error(), "\n"), "\n  - ")
	fmt.Fprintf(os.Stderr, "%s: invalid configuration:\n%s\n\nRun '%s --help' for the settings.\n", s.name, problems, s.name)
	os.Exit(2)
}

// Args are the positional arguments left after Parse.
func (s *Set) Args() []string { return s.fs.Args() }

// Usage writes the help text: the intro, then each group of settings with
// its flag, variable, default and meaning.
func (s *Set) Usage(w io.Writer) {
	if s.intro != "" {
		fmt.Fprintln(w, strings.TrimRight(s.intro, "\n"))
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Every flag can also be set by the environment variable shown (flags win).\n")
	group := "\x00"
	for _, e := range s.entries {
		if e.Group != group {
			group = e.Group
			if group != "" {
				fmt.Fprintf(w, "\n%s:\n", group)
			} else {
				fmt.Fprintln(w)
			}
		}
		arg, isBool := " string", false
		switch s.fs.Lookup(e.Flag).Value.(recording).Value.(type) {
		case *boolValue:
			arg, isBool = "", true
		case *intValue, *int64Value:
			arg = " int"
		case *bytesValue:
			arg = " size"
		case *durationValue:
			arg = " duration"
		case *listValue:
			arg = " list"
		}
		if e.Env == "" {
			fmt.Fprintf(w, "  --%s%s\n", e.Flag, arg)
		} else {
			fmt.Fprintf(w, "  --%s%s  [$%s]\n", e.Flag, arg, e.Env)
		}
		fmt.Fprintf(w, "        %s", e.Usage)
		if e.Default != "" && !e.Secret && !(isBool && e.Default == "false") {
			fmt.Fprintf(w, " (default %s)", e.Default)
		}
		fmt.Fprintln(w)
	}
}

// Markdown renders the settings as a Markdown table (one row per setting,
// grouped) for a README.
func (s *Set) Markdown() string {
	var b strings.Builder
	b.WriteString("| Flag | Environment | Default | Meaning |\n|---|---|---|---|\n")
	group := ""
	for _, e := range s.entries {
		if e.Group != group && e.Group != "" {
			group = e.Group
			fmt.Fprintf(&b, "| **%s** | | | |\n", group)
		}
		def := e.Default
		if e.Secret || def == "" {
			def = "-"
		} else {
			def = "`" + def + "`"
		}
		env := "-"
		if e.Env != "" {
			env = "`" + e.Env + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | %s | %s | %s |\n", e.Flag, env, def, strings.ReplaceAll(e.Usage, "|", "\\|"))
	}
	return b.String()
}
