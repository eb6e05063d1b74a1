package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/deadletter"
	"github.com/kcqrs/kcqrs/wire"
)

// wantAll fails unless body contains every string of want.
func wantAll(t *testing.T, page, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("%s: no %q in:\n%s", page, w, body)
		}
	}
}

// TestPages: every page shows what the workload did, as served HTML.
func TestPages(t *testing.T) {
	w := newWorkload(t)
	h := w.console(t).Handler()

	code, body, hdr := get(t, h, "GET", "/topology", "")
	if code != http.StatusOK || !strings.Contains(hdr.Get("Content-Security-Policy"), "script-src 'none'") {
		t.Fatalf("topology: %d, CSP %q", code, hdr.Get("Content-Security-Policy"))
	}
	wantAll(t, "topology", body, "kcqrs-processor", "snapshots-changelog", "commands-dlq", "OpenAccount", "MoneyDeposited", "flowchart LR")

	eventually(t, "workers page", func() (bool, string) {
		_, body := w.get(h, "/workers")
		ok := strings.Contains(body, "commands/0, commands/1, commands/2, commands/3") && strings.Contains(body, "Ready partitions: <b>4 of 4</b>") &&
			strings.Contains(body, "kcqrs-processor-worker-a")
		return ok, body
	})
	_, body = w.get(h, "/workers")
	wantAll(t, "workers", body, "Transactions committed <b>4</b>", "aborted <b>0</b>")

	_, body = w.get(h, "/groups")
	wantAll(t, "groups", body, "kcqrs-processor <small class=\"muted\">(processor)</small>", "State <b>Stable</b>")

	_, body = w.get(h, "/deadletters")
	wantAll(t, "deadletters", body, "1 dead letter(s) on <b>commands-dlq</b>", "undecodable", w.deadID, "this is not avro", "Read-only")
	if strings.Contains(body, "<form class=\"inline\" method=\"post\"") {
		t.Error("deadletters: a re-drive button on a read-only console")
	}

	code, body = w.get(h, "/aggregate?type=account&id="+w.account)
	if code != http.StatusOK {
		t.Fatalf("aggregate: %d\n%s", code, body)
	}
	wantAll(t, "aggregate", body, "Version <b>2</b>", "&#34;Balance&#34;: 4200", "&#34;Owner&#34;: &#34;Alice&#34;", "insufficient_funds")
}

func (w *workload) get(h http.Handler, path string) (int, string) {
	code, body, _ := get(w.h.T.(*testing.T), h, "GET", path, "")
	return code, body
}

// TestAggregateBadInput: a wrong lookup gets a clear answer, not a 500.
func TestAggregateBadInput(t *testing.T) {
	w := newWorkload(t)
	h := w.console(t).Handler()
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/aggregate?type=nope&id=x", http.StatusBadRequest, "unknown aggregate type &#34;nope&#34;: the types are [account folder]"},
		{"/aggregate?type=account", http.StatusBadRequest, "give the aggregate&#39;s id"},
		{"/aggregate?type=account&id=never-seen", http.StatusNotFound, "never accepted a command"},
		{"/aggregate?type=account&id=" + url.QueryEscape("<b>x</b>/\x00"), http.StatusNotFound, "&lt;b&gt;x&lt;/b&gt;"},
		{"/aggregate", http.StatusOK, "Look up"},
	} {
		code, body := w.get(h, c.path)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d, want %d with %q:\n%s", c.path, code, c.code, c.want, body)
		}
	}
}

// TestRedriveRefusedReadOnly: without AllowRedrive the POST is refused and
// nothing is written to the commands topic.
func TestRedriveRefusedReadOnly(t *testing.T) {
	w := newWorkload(t)
	h := w.console(t).Handler()
	before := len(w.h.ReadTopic("commands"))
	code, body, _ := get(t, h, "POST", "/deadletters/redrive", "partition=0&offset=0")
	if code != http.StatusForbidden || !strings.Contains(body, "--allow-redrive") {
		t.Fatalf("read-only re-drive: %d\n%s", code, body)
	}
	if after := len(w.h.ReadTopic("commands")); after != before {
		t.Fatalf("read-only console wrote to commands: %d records, were %d", after, before)
	}
}

// TestRedrive: with AllowRedrive, the button re-sends the dead letter to
// the commands topic exactly as `kcqrs dlq redrive --execute` does (same
// key, value, command id; no kcqrs_dlq_* headers; murmur2's partition);
// bad positions and cross-site posts are refused.
func TestRedrive(t *testing.T) {
	w := newWorkload(t)
	h := w.console(t, func(o *Options) { o.AllowRedrive = true }).Handler()
	_, body := w.get(h, "/deadletters")
	if !strings.Contains(body, `<button>Re-drive`) {
		t.Fatalf("no re-drive button:\n%s", body)
	}
	dls := w.h.ReadTopic("commands-dlq")
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := dls[0]
	at := "partition=" + itoa(int64(dl.Partition)) + "&offset=" + itoa(dl.Offset)

	if code, body, _ := get(t, h, "POST", "/deadletters/redrive", at, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"); code != http.StatusForbidden {
		t.Fatalf("cross-site re-drive: %d, want 403\n%s", code, body)
	}
	for _, bad := range []string{"partition=0&offset=999", "partition=x&offset=0", "partition=-1&offset=0", ""} {
		if code, body, _ := get(t, h, "POST", "/deadletters/redrive", bad); code < 400 || code == http.StatusForbidden {
			t.Errorf("re-drive %q: %d\n%s", bad, code, body)
		}
	}
	before := len(w.h.ReadTopic("commands"))
	code, _, hdr := get(t, h, "POST", "/deadletters/redrive", at)
	if code != http.StatusSeeOther || hdr.Get("Location") != "/deadletters?redriven="+itoa(int64(dl.Partition))+":"+itoa(dl.Offset) {
		t.Fatalf("re-drive: %d, location %q", code, hdr.Get("Location"))
	}
	cmds := w.h.ReadTopic("commands")
	if len(cmds) != before+1 {
		t.Fatalf("commands: %d records after a re-drive, want %d", len(cmds), before+1)
	}
	var got *kgo.Record
	for _, r := range cmds {
		if deadletter.Header(r, wire.HeaderCommandID) == w.deadID && r.Offset >= 0 {
			got = r // the last one: the re-driven copy
		}
	}
	if got == nil || string(got.Key) != w.account || string(got.Value) != "this is not avro" {
		t.Fatalf("re-driven record: %+v", got)
	}
	for _, hd := range got.Headers {
		if strings.HasPrefix(hd.Key, "kcqrs_dlq_") {
			t.Errorf("re-driven record keeps header %s", hd.Key)
		}
	}
	// The processor reads it again and, as it is still not Avro,
	// dead-letters it again: the page then lists two.
	eventually(t, "second dead letter", func() (bool, string) {
		_, body := w.get(h, "/deadletters")
		return strings.Contains(body, "2 dead letter(s)"), body
	})
}

// TestHostileDeadLetter: a dead letter written by anyone (headers with
// markup, a binary value, no key) is shown escaped, and cannot be
// re-driven.
func TestHostileDeadLetter(t *testing.T) {
	w := newWorkload(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.h.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec := &kgo.Record{Topic: "commands-dlq", Value: []byte{0xff, 0x00, 0xc3}, Headers: []kgo.RecordHeader{
		{Key: wire.HeaderDLQError, Value: []byte(`<script>alert(1)</script>: "quoted"`)},
		{Key: "<img src=x onerror=alert(2)>", Value: []byte{0xc3, 0x28}},
	}}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	h := w.console(t, func(o *Options) { o.AllowRedrive = true }).Handler()
	_, body := w.get(h, "/deadletters")
	if strings.Contains(body, "<script>") || strings.Contains(body, "<img") {
		t.Fatalf("markup from a dead letter reached the page unescaped:\n%s", body)
	}
	wantAll(t, "deadletters", body, "&lt;script&gt;alert(1)&lt;/script&gt;", "(3 bytes, binary)", "skipped: no key")
	// The URL cannot make the page announce a re-drive that did not happen.
	if _, body := w.get(h, "/deadletters?redriven=9:9&notice=forged"); strings.Contains(body, "re-drove") || strings.Contains(body, "forged") {
		t.Fatalf("a forged notice reached the page:\n%s", body)
	}
	code, body, _ := get(t, h, "POST", "/deadletters/redrive", "partition="+itoa(int64(rec.Partition))+"&offset="+itoa(rec.Offset))
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "no key") {
		t.Fatalf("re-drive of a keyless dead letter: %d\n%s", code, body)
	}
}

// TestWorkersWithoutOps: with no ops address the page says so; with one
// that does not answer it says that, and the group is still shown.
func TestWorkersWithoutOps(t *testing.T) {
	w := newWorkload(t)
	_, body := w.get(w.console(t, func(o *Options) { o.OpsAddrs = nil }).Handler(), "/workers")
	wantAll(t, "workers", body, "No worker ops address is known", "kcqrs-processor-worker-a")
	_, body = w.get(w.console(t, func(o *Options) { o.OpsAddrs = []string{"127.0.0.1:1"} }).Handler(), "/workers")
	wantAll(t, "workers", body, "/metrics of 127.0.0.1:1 unreachable", "kcqrs-processor-worker-a")
}

// TestBrokerDown: a console whose cluster is gone answers with the error,
// not a hang or a crash.
func TestBrokerDown(t *testing.T) {
	c, err := New(Options{ClientOpts: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, Registry: newWorkloadRegistry(t), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := c.Handler()
	for _, p := range []string{"/groups", "/deadletters", "/aggregate?type=account&id=a"} {
		code, body, _ := get(t, h, "GET", p, "")
		if code != http.StatusBadGateway || !strings.Contains(body, `class="error"`) {
			t.Errorf("%s with no broker: %d\n%s", p, code, body)
		}
	}
	if code, _, _ := get(t, h, "GET", "/topology", ""); code != http.StatusOK {
		t.Errorf("topology needs no broker, got %d", code)
	}
}

func TestParseSample(t *testing.T) {
	for _, c := range []struct {
		line, name, labels string
		value              float64
		ok                 bool
	}{
		{`kcqrs_partition_ready{partition="3",role="standby"} 1`, "kcqrs_partition_ready", "partition=3 role=standby", 1, true},
		{`kcqrs_transactions_total{result="committed"} 12`, "kcqrs_transactions_total", "result=committed", 12, true},
		{`x{a="b,c\"d",e="f"} 2.5 1700000000`, "x", `a=b,c"d e=f`, 2.5, true},
		{`go_goroutines 7`, "go_goroutines", "", 7, true},
		{`# HELP x y`, "", "", 0, false},
		{`broken{a="b" 1`, "", "", 0, false},
		{`novalue`, "", "", 0, false},
	} {
		name, labels, v, ok := parseSample(c.line)
		var ls []string
		for _, k := range []string{"a", "e", "partition", "result", "role"} {
			if val, found := labels[k]; found {
				ls = append(ls, k+"="+val)
			}
		}
		if ok != c.ok || name != c.name || v != c.value || strings.Join(ls, " ") != c.labels {
			t.Errorf("%q: %q %q %v %v", c.line, name, ls, v, ok)
		}
	}
}

// TestOpenTransactionShown: a producer that leaves a transaction open on
// a commands partition (what the hanging-transaction guard watches for)
// is shown on the workers page with its producer id and first offset; the
// page says none when there is none.
func TestOpenTransactionShown(t *testing.T) {
	w := newWorkload(t)
	h := w.console(t).Handler()
	_, body := w.get(h, "/workers")
	wantAll(t, "workers", body, "None: every commands partition is readable to its end.")

	cl, err := kgo.NewClient(kgo.SeedBrokers(w.h.Brokers...), kgo.TransactionalID("console-test-hanging"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "commands", Partition: 3, Key: []byte("x"), Value: []byte("{}")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "open transaction on the workers page", func() (bool, string) {
		_, body := w.get(h, "/workers")
		// Partition 3, stable offset 0, end 1, then the producer: its id,
		// epoch, the transaction's first offset (0), its last write.
		i := strings.Index(body, `<tr class="open"><td class="num">3</td><td class="num">0</td><td class="num">1</td>`)
		if i < 0 || !strings.Contains(body, "hanging transaction") {
			return false, body
		}
		row := body[i : i+strings.Index(body[i:], "</tr>")]
		return strings.Count(row, "<td") == 8 && strings.Contains(row, `<td class="num">0</td><td>20`), row
	})
	if err := cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	eventually(t, "transaction ended", func() (bool, string) {
		_, body := w.get(h, "/workers")
		return strings.Contains(body, "None: every commands partition"), body
	})
}

// TestWorkersStandby: with two workers keeping a standby of each
// partition, the workers page shows both members, the partitions each
// owns, and from their metrics the standby copies (role standby) beside
// the active ones.
func TestWorkersStandby(t *testing.T) {
	w := newWorkloadStandbys(t, 1)
	second := w.startWorker(t, "worker-b", 1)
	h := w.console(t, func(o *Options) { o.OpsAddrs = []string{w.opsAddr, second} }).Handler()
	eventually(t, "two workers, with standbys", func() (bool, string) {
		_, body := w.get(h, "/workers")
		ok := strings.Contains(body, "kcqrs-processor-worker-a") && strings.Contains(body, "kcqrs-processor-worker-b") &&
			strings.Contains(body, "2 member(s)") && strings.Count(body, "<td>standby</td>") >= 4 && strings.Count(body, "<td>active</td>") == 4
		return ok, body
	})
}
