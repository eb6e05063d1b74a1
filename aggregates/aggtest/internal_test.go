package aggtest

import (
	"strings"
	"testing"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
)

func TestParseFile(t *testing.T) {
	const file = `# comment
given
AccountOpened {"Owner": "ann", "Currency": "EUR"}
# a comment inside a case
AccountClosed
when
OpenAccount {"owner": "bob", "currency": "USD"}
----
rejected closed: account is closed and cannot be opened again
state {"Status":"closed"}


when
CloseAccount {}
----
rejected not_open: account was never opened
version 0
`
	cases, err := parseFile(account.Type, "f", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 2 {
		t.Fatalf("%d cases, want 2: %+v", len(cases), cases)
	}
	c := cases[0]
	if c.line != 2 || len(c.given) != 2 || c.given[1] != (account.AccountClosed{}) ||
		c.when != (account.OpenAccount{Owner: "bob", Currency: "USD"}) ||
		len(c.want) != 2 || !c.wantState || c.wantVersion {
		t.Errorf("case 0: %+v", c)
	}
	c = cases[1]
	if c.line != 13 || len(c.given) != 0 || c.when != (account.CloseAccount{}) || c.wantState || !c.wantVersion {
		t.Errorf("case 1: %+v", c)
	}
}

func TestParseFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"no keyword", "Deposit {}\n", `f:1: want "given" or "when", got "Deposit {}"`},
		{"unknown command", "when\nSteal {}\n----\nno events\n", `f:2: command: unknown type "Steal"`},
		{"unknown event", "given\nRobbed\nwhen\nDeposit\n----\nx\n", `f:2: given event: unknown type "Robbed"`},
		{"unknown field", "when\nDeposit {\"Amount\": 1, \"Memo\": \"x\"}\n----\nx\n", `f:2: command: Deposit: json: unknown field "Memo"`},
		{"bad JSON", "when\nDeposit {\"Amount\": \"one\"}\n----\nx\n", "f:2: command: Deposit: json: cannot unmarshal"},
		{"trailing data", "when\nDeposit {} {}\n----\nx\n", "f:2: command: Deposit: trailing data"},
		{"no dashes", "when\nDeposit\nno events\n", `f:3: want "----" after the command, got "no events"`},
		{"incomplete", "given\nAccountClosed\n\nwhen\nDeposit\n----\nno events\n", "f:3: case starting at line 1 is incomplete"},
		{"incomplete at the end", "when\nDeposit\n", "f:3: case starting at line 1 is incomplete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFile(account.Type, "f", []byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

type recorder struct{ reports []string }

func (r *recorder) Helper()                           {}
func (r *recorder) Errorf(format string, args ...any) { r.reports = append(r.reports, format) }
func (r *recorder) Fatalf(format string, args ...any) { r.reports = append(r.reports, format) }

func TestRender(t *testing.T) {
	rec := &recorder{}
	f := ForHandler(rec, account.Type).Given(account.AccountOpened{Owner: "ann", Currency: "EUR"})
	for _, tc := range []struct {
		cmd  aggregates.Command
		want string
	}{
		{account.Deposit{Amount: 3}, `MoneyDeposited {"Amount":3,"Balance":3}|state {"Status":"open","Owner":"ann","Currency":"EUR","Balance":3}|version 2`},
		{account.CloseAccount{}, `AccountClosed|state {"Status":"closed","Owner":"ann","Currency":"EUR","Balance":0}|version 2`},
		{account.Withdraw{Amount: 3}, `rejected insufficient_funds: balance 0 is less than the withdrawal of 3|state {"Status":"open","Owner":"ann","Currency":"EUR","Balance":0}|version 1`},
	} {
		got, err := render(f.When(tc.cmd), true, true)
		if err != nil {
			t.Fatal(err)
		}
		if g := strings.Join(got, "|"); g != tc.want {
			t.Errorf("%T:\n got %s\nwant %s", tc.cmd, g, tc.want)
		}
	}
	typ := aggregates.Type[int]{
		Name:   "n",
		Decide: func(int, aggregates.Command) ([]aggregates.Event, error) { return nil, nil },
		Evolve: func(s int, _ aggregates.Event) int { return s },
	}
	got, _ := render(ForHandler(rec, typ).When(account.Deposit{}), false, false)
	if strings.Join(got, "|") != "no events" {
		t.Errorf("got %q, want no events", got)
	}
	if len(rec.reports) != 0 {
		t.Errorf("reports: %q", rec.reports)
	}
}

func TestDiff(t *testing.T) {
	type inner struct {
		N    int
		tags []string
	}
	type state struct {
		Name  string
		In    inner
		P     *inner
		M     map[string]int
		S     []int
		E     []int
		Any   any
		Fn    func()
		Chain *state
	}
	want := state{Name: "a", In: inner{1, []string{"x"}}, P: &inner{N: 1}, M: map[string]int{"k": 1, "gone": 2}, S: []int{1, 2}, E: []int{}, Any: 1}
	got := state{Name: "b", In: inner{1, []string{"y"}}, P: &inner{N: 2}, M: map[string]int{"k": 3, "new": 4}, S: []int{1}, Any: "1", Fn: func() {}}
	out := diffWith("s", "want", "got", want, got)
	for _, line := range []string{
		`s.Name: want "a", got "b"`,
		`s.In.tags[0]: want "x", got "y"`,
		`s.P.N: want 1, got 2`,
		`s.M["gone"]: missing key: want 2`,
		`s.M["k"]: want 1, got 3`,
		`s.M["new"]: unexpected key: got 4`,
		`s.S[1]: missing: want 2`,
		`s.E: want []int{}, got []int(nil)`,
		`s.Any: want 1, got "1"`,
		`s.Fn: functions are never equal unless both are nil`,
	} {
		if !strings.Contains(out, line) {
			t.Errorf("diff lacks %q:\n%s", line, out)
		}
	}
	if strings.Contains(out, "Chain") {
		t.Errorf("diff reports equal nil pointers:\n%s", out)
	}

	// A cycle ends at the depth limit instead of overflowing the stack.
	a, b := &state{Name: "a"}, &state{Name: "a"}
	a.Chain, b.Chain = a, b
	a.Name = "x"
	if out := diffWith("c", "want", "got", a, b); !strings.Contains(out, `c.Name: want "x", got "a"`) {
		t.Errorf("cyclic diff:\n%s", out)
	}

	// Long diffs are cut.
	long1, long2 := make([]int, 100), make([]int, 100)
	for i := range long2 {
		long2[i] = i + 1
	}
	if out := diffWith("l", "want", "got", long1, long2); strings.Count(out, "\n") != maxDiffLines || !strings.HasSuffix(out, "...") {
		t.Errorf("long diff not cut at %d lines:\n%s", maxDiffLines, out)
	}
}

// FuzzParseFile: a data file is developer input; a broken one must give an
// error naming the problem, never a panic.
func FuzzParseFile(f *testing.F) {
	f.Add([]byte("given\nAccountOpened {\"Owner\": \"ann\", \"Currency\": \"EUR\"}\nwhen\nDeposit {\"Amount\": 5}\n----\nMoneyDeposited {\"Amount\":5,\"Balance\":5}\nstate {\"Status\":\"open\"}\nversion 2\n"))
	f.Add([]byte("when\nCloseAccount\n----\nrejected not_open: account was never opened\n"))
	f.Add([]byte("when\n----\n"))
	f.Add([]byte("given\nNope {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cases, err := parseFile(account.Type, "fuzz.txt", data)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.txt") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, c := range cases {
			if c.line < 1 {
				t.Fatalf("case without a line number: %+v", c)
			}
		}
	})
}
