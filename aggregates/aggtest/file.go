package aggtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates"
)

// RunFile runs the scenarios of a data-driven test file against h, each as a
// subtest named after the file and the line where it starts. The format, in
// the spirit of Pebble's testdata files:
//
//	# Lines starting with '#' are comments; blank lines end a case.
//	given
//	AccountOpened {"Owner": "ann", "Currency": "EUR"}
//	MoneyDeposited {"Amount": 100, "Balance": 100}
//	when
//	Withdraw {"Amount": 30}
//	----
//	MoneyWithdrawn {"Amount":30,"Balance":70}
//	state {"Status":"open","Owner":"ann","Currency":"EUR","Balance":70}
//
// The "given" section is optional. A message is written as its CommandType
// or EventType, a space and its JSON (encoding/json, so fields are matched by
// Go name, case-insensitively; unknown fields are errors); "{}" may be left
// out. Below "----" is the expected output, compared line by line:
//
//   - one line per event, as above (compact JSON, "{}" left out), or
//     "no events" when the command was accepted without any;
//   - "rejected <code>: <message>" for a rejection, or "error: <text>" for
//     any other error;
//   - then, only if the expected output has one, a "state <JSON>" line with
//     the state afterwards, and a "version <n>" line likewise.
//
// Every check of When (see the package doc) runs too. On a mismatch the
// report shows the actual output in the same format, ready to be pasted.
func RunFile(t *testing.T, h aggregates.Handler, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("aggtest: %v", err)
	}
	cases, err := parseFile(h, path, data)
	if err != nil {
		t.Fatalf("aggtest: %v", err)
	}
	if len(cases) == 0 {
		t.Fatalf("aggtest: %s: no cases", path)
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s:%d", filepath.Base(path), c.line), func(t *testing.T) {
			t.Helper()
			r := ForHandler(t, h).Given(c.given...).When(c.when)
			if !r.done {
				return
			}
			got, err := render(r, c.wantState, c.wantVersion)
			if err != nil {
				t.Fatalf("aggtest: %s:%d: %v", path, c.line, err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("aggtest: %s:%d: output differs\nwant:\n%s\ngot:\n%s",
					path, c.line, strings.Join(c.want, "\n"), strings.Join(got, "\n"))
			}
		})
	}
}

type fileCase struct {
	line        int // where the case starts
	given       []aggregates.Event
	when        aggregates.Command
	want        []string
	wantState   bool
	wantVersion bool
}

// parseFile reads the cases of a data-driven file, decoding messages with
// h's prototypes.
func parseFile(h aggregates.Handler, path string, data []byte) ([]fileCase, error) {
	commands := map[string]reflect.Type{}
	for _, c := range h.CommandPrototypes() {
		if c != nil {
			commands[c.CommandType()] = reflect.TypeOf(c)
		}
	}
	events := map[string]reflect.Type{}
	for _, e := range h.EventPrototypes() {
		if e != nil {
			events[e.EventType()] = reflect.TypeOf(e)
		}
	}

	const (
		between = iota // outside a case
		given          // reading given events
		when           // expecting the command
		dashes         // expecting "----"
		output         // reading expected output
	)
	var (
		cases []fileCase
		cur   fileCase
		mode  = between
		errs  []error
	)
	fail := func(n int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", path, n, fmt.Sprintf(format, args...)))
	}
	end := func(n int) {
		switch mode {
		case given, when, dashes:
			fail(n, "case starting at line %d is incomplete (want given, when, ----, output)", cur.line)
		case output:
			if cur.line > 0 { // not a broken case being skipped
				cases = append(cases, cur)
			}
		}
		cur, mode = fileCase{}, between
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t\r")
		if strings.TrimSpace(line) == "" {
			end(n)
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		switch mode {
		case between:
			cur = fileCase{line: n}
			switch line {
			case "given":
				mode = given
			case "when":
				mode = when
			default:
				fail(n, "want %q or %q, got %q", "given", "when", line)
				mode = output // skip to the next blank line
				cur.line = -1
			}
		case given:
			if line == "when" {
				mode = when
				continue
			}
			v, err := decodeMessage(line, events)
			if err != nil {
				fail(n, "given event: %v", err)
				continue
			}
			cur.given = append(cur.given, v.(aggregates.Event))
		case when:
			v, err := decodeMessage(line, commands)
			if err != nil {
				fail(n, "command: %v", err)
			} else {
				cur.when = v.(aggregates.Command)
			}
			mode = dashes
		case dashes:
			if line != "----" {
				fail(n, "want %q after the command, got %q", "----", line)
			}
			mode = output
		case output:
			if cur.line < 0 {
				continue // skipping a broken case
			}
			cur.wantState = cur.wantState || strings.HasPrefix(line, "state ")
			cur.wantVersion = cur.wantVersion || strings.HasPrefix(line, "version ")
			cur.want = append(cur.want, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	end(n + 1)
	return cases, errors.Join(errs...)
}

// decodeMessage decodes `Name {json}` into a new value of the type listed
// under Name, a pointer if the prototype is one.
func decodeMessage(line string, types map[string]reflect.Type) (any, error) {
	name, body, _ := strings.Cut(line, " ")
	body = strings.TrimSpace(body)
	if body == "" {
		body = "{}"
	}
	typ, ok := types[name]
	if !ok {
		return nil, fmt.Errorf("unknown type %q", name)
	}
	ptr := typ.Kind() == reflect.Pointer
	if ptr {
		typ = typ.Elem()
	}
	v := reflect.New(typ)
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v.Interface()); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: trailing data after the JSON value", name)
	}
	if ptr {
		return v.Interface(), nil
	}
	return v.Elem().Interface(), nil
}

// render formats the outcome of r as the expected-output lines of RunFile.
func render(r *Result[any], withState, withVersion bool) ([]string, error) {
	var out []string
	switch {
	case r.err != nil:
		if rej, ok := aggregates.AsRejection(r.err); ok {
			out = append(out, "rejected "+rej.Code+": "+rej.Message)
		} else {
			out = append(out, "error: "+r.err.Error())
		}
	case len(r.events) == 0:
		out = append(out, "no events")
	default:
		for _, e := range r.events {
			line, err := encodeMessage(e.EventType(), e)
			if err != nil {
				return nil, err
			}
			out = append(out, line)
		}
	}
	if withState {
		b, err := json.Marshal(r.state)
		if err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
		out = append(out, "state "+string(b))
	}
	if withVersion {
		out = append(out, fmt.Sprintf("version %d", r.Version()))
	}
	return out, nil
}

func encodeMessage(name string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	if string(b) == "{}" {
		return name, nil
	}
	return name + " " + string(b), nil
}
