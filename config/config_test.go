package config_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcqrs/kcqrs/config"
)

type sample struct {
	name     string
	n        int
	size     int64
	interval time.Duration
	on       bool
	list     []string
	secret   string
}

func newSample() (*config.Set, *sample) {
	s := config.New("test", "")
	v := &sample{}
	s.Group("General")
	s.String(&v.name, "name", "anon", "a name")
	s.Int(&v.n, "count", 3, "a count")
	s.Bytes(&v.size, "cache-size", 64<<20, "a size")
	s.Duration(&v.interval, "commit-interval", 100*time.Millisecond, "an interval")
	s.Bool(&v.on, "pprof", false, "a switch")
	s.List(&v.list, "brokers", []string{"a:1"}, "a list")
	s.Secret(&v.secret, "sasl-password", "a secret")
	return s, v
}

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestPrecedence(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  func(string) (string, bool)
		want sample
	}{
		{"defaults", nil, env(), sample{"anon", 3, 64 << 20, 100 * time.Millisecond, false, []string{"a:1"}, ""}},
		{"environment", nil, env("KCQRS_NAME", "x", "KCQRS_COUNT", "7", "KCQRS_CACHE_SIZE", "2MiB", "KCQRS_COMMIT_INTERVAL", "1s", "KCQRS_PPROF", "true", "KCQRS_BROKERS", "b:1, c:2", "KCQRS_SASL_PASSWORD", "pw"),
			sample{"x", 7, 2 << 20, time.Second, true, []string{"b:1", "c:2"}, "pw"}},
		{"flags win over the environment", []string{"--name=y", "--count", "9", "--pprof", "--brokers=d:4"}, env("KCQRS_NAME", "x", "KCQRS_COUNT", "7"),
			sample{"y", 9, 64 << 20, 100 * time.Millisecond, true, []string{"d:4"}, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, v := newSample()
			if err := s.Parse(tt.args, tt.env); err != nil {
				t.Fatal(err)
			}
			if v.name != tt.want.name || v.n != tt.want.n || v.size != tt.want.size || v.interval != tt.want.interval ||
				v.on != tt.want.on || strings.Join(v.list, ",") != strings.Join(tt.want.list, ",") || v.secret != tt.want.secret {
				t.Fatalf("got %+v, want %+v", *v, tt.want)
			}
		})
	}
}

// TestEveryProblemReported: all bad values, from flags and the environment,
// come back in one error, and a secret's value never appears in it.
func TestEveryProblemReported(t *testing.T) {
	s, _ := newSample()
	err := s.Parse([]string{"--count=x", "--commit-interval=soon", "--pprof=maybe"},
		env("KCQRS_CACHE_SIZE", "lots", "KCQRS_NAME", "fine", "KCQRS_SASL_PASSWORD", "hunter2"))
	if err != nil {
		t.Logf("%v", err)
	}
	for _, want := range []string{"--count=\"x\"", "--commit-interval=\"soon\"", "--pprof=\"maybe\"", "KCQRS_CACHE_SIZE=\"lots\""} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "fine") {
		t.Errorf("a good value reported: %v", err)
	}
}

func TestHelpAndMarkdown(t *testing.T) {
	s, _ := newSample()
	s.Intro("usage: test")
	var b bytes.Buffer
	s.Usage(&b)
	for _, want := range []string{"usage: test", "General:", "--commit-interval duration  [$KCQRS_COMMIT_INTERVAL]", "(default 100ms)", "(default 64MiB)", "--pprof  [$KCQRS_PPROF]"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, b.String())
		}
	}
	md := s.Markdown()
	for _, want := range []string{"| `--count` | `KCQRS_COUNT` | `3` | a count |", "| `--sasl-password` | `KCQRS_SASL_PASSWORD` | - |", "| **General** |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if err := s.Parse([]string{"--help"}, env()); err != config.ErrHelp {
		t.Fatalf("--help: %v, want ErrHelp", err)
	}
}

func TestKafkaValidate(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		k     config.Kafka
		wants []string // substrings of the error; none: valid
	}{
		{"plain", config.Kafka{Brokers: []string{"k:9092"}}, nil},
		{"scram", config.Kafka{Brokers: []string{"k:9092"}, SASLMechanism: "scram-sha-512", SASLUser: "u", SASLPassword: "p"}, nil},
		{"everything wrong at once", config.Kafka{Brokers: []string{"nohost"}, SASLMechanism: "GSSAPI", TLSCertFile: "x.pem", TLSCAFile: filepath.Join(dir, "missing.pem")},
			[]string{`"nohost" is not host:port`, `--sasl-mechanism "GSSAPI"`, "--tls-cert and --tls-key go together", "--tls-ca", "--tls-cert: "}},
		{"sasl without credentials", config.Kafka{Brokers: []string{"k:1"}, SASLMechanism: "PLAIN"}, []string{"--sasl-user is required", "--sasl-password"}},
		{"credentials without sasl", config.Kafka{Brokers: []string{"k:1"}, SASLUser: "u"}, []string{"without --sasl-mechanism"}},
		{"no brokers", config.Kafka{}, []string{"no seed brokers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.k.Validate()
			if len(tt.wants) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("valid, want an error")
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	k := config.Kafka{Brokers: []string{"k:1"}, TLSCAFile: ca}
	if _, err := k.Opts(); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("bad CA file: %v", err)
	}
}

func TestLog(t *testing.T) {
	var b bytes.Buffer
	l := config.Log{Format: "json", Level: "debug"}
	log, err := l.Logger(&b)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hello", "partition", 3)
	if !strings.Contains(b.String(), `"partition":3`) {
		t.Fatalf("json log: %s", b.String())
	}
	bad := config.Log{Format: "xml", Level: "loud"}
	err = bad.Validate()
	if err == nil || !strings.Contains(err.Error(), "--log-format") || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("both problems not reported: %v", err)
	}
}

// TestFlagsOnly: settings bound after FlagsOnly are flags without a
// variable: the environment never sets them, and help and docs show none.
func TestFlagsOnly(t *testing.T) {
	s := config.New("x", "")
	var topic, id string
	s.String(&topic, "commands-topic", "commands", "topic")
	s.FlagsOnly()
	s.String(&id, "id", "", "aggregate id")
	env := map[string]string{"KCQRS_COMMANDS_TOPIC": "c2", "KCQRS_ID": "from-env"}
	if err := s.Parse(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if topic != "c2" || id != "" {
		t.Fatalf("topic %q id %q: want the variable for the setting only", topic, id)
	}
	var help strings.Builder
	s.Usage(&help)
	if strings.Contains(help.String(), "KCQRS_ID") || !strings.Contains(help.String(), "KCQRS_COMMANDS_TOPIC") || strings.Contains(s.Markdown(), "KCQRS_ID") {
		t.Fatalf("help shows a variable for a flag-only setting:\n%s", help.String())
	}
}
