package topology

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/aggregates/folder"
	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/wire"
)

func testRegistry(t testing.TB) *Registry {
	t.Helper()
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	set, err := schemas.LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(account.Type, set); err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestParseExpectation(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ok      bool
		version int64
		met     []int64
		notMet  []int64
	}{
		{in: "", ok: true, met: []int64{0, 5}},
		{in: "any", ok: true, met: []int64{0, 5}},
		{in: "no_stream", ok: true, met: []int64{0}, notMet: []int64{1}},
		{in: "exists", ok: true, met: []int64{1, 9}, notMet: []int64{0}},
		{in: "3", ok: true, met: []int64{3}, notMet: []int64{0, 2, 4}},
		{in: "0", ok: true, met: []int64{0}, notMet: []int64{1}},
		{in: "-1"}, {in: "three"}, {in: "1.5"}, {in: "+5"}, {in: "007"}, {in: "00"}, {in: " 5"}, {in: "5 "},
		{in: "9223372036854775808"}, {in: "ANY"},
	} {
		e, err := parseExpectation(tc.in)
		if (err == nil) != tc.ok {
			t.Fatalf("%q: err %v, want ok=%v", tc.in, err, tc.ok)
		}
		for _, v := range tc.met {
			if !e.met(v) {
				t.Errorf("%q should be met at version %d", tc.in, v)
			}
		}
		for _, v := range tc.notMet {
			if e.met(v) {
				t.Errorf("%q should not be met at version %d", tc.in, v)
			}
		}
	}
}

func TestParseCommandMetaKeepsReplyAddressOnBadHeaders(t *testing.T) {
	r := &kgo.Record{Key: []byte("a"), Headers: []kgo.RecordHeader{
		{Key: wire.HeaderCorrelationID, Value: []byte{0, 1, 2}},
		{Key: wire.HeaderReplyTopic, Value: []byte("mine")},
		{Key: wire.HeaderReplyPartition, Value: binary.BigEndian.AppendUint32(nil, 3)},
		{Key: wire.HeaderExpectedVersion, Value: []byte("x")},
	}}
	m, err := parseCommandMeta(r, "command_reply")
	var ie *invalidError
	if !errors.As(err, &ie) || ie.code != CodeBadHeader {
		t.Fatalf("err %v, want a bad_header invalidError", err)
	}
	if m.reply.topic != "mine" || m.reply.partition != 3 || string(m.reply.correlationID) != "\x00\x01\x02" {
		t.Fatalf("reply address lost: %+v", m.reply)
	}
}

// TestCommandIDMustBeUTF8: header values are UTF-8 (the contract); a
// command id that is not is bad_header, since its JSON reply could not
// carry it unaltered.
func TestCommandIDMustBeUTF8(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{{"cmd-1", true}, {"ünïcödé ✓", true}, {"cmd-\xff", false}, {"\xc3", false}, {"a\xed\xa0\x80b", false}} {
		r := &kgo.Record{Key: []byte("a"), Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte(tc.id)},
			{Key: wire.HeaderAggregateType, Value: []byte("account")},
		}}
		_, err := parseCommandMeta(r, "command_reply")
		var ie *invalidError
		if tc.ok != (err == nil) || (err != nil && (!errors.As(err, &ie) || ie.code != CodeBadHeader)) {
			t.Errorf("%q: err %v, want ok=%v or bad_header", tc.id, err, tc.ok)
		}
	}
}

func TestDecodeCommandChecksTypeAgainstFingerprint(t *testing.T) {
	reg := testRegistry(t)
	bt := reg.types["account"]
	set, _ := schemas.LoadAccount()
	c, _ := set.Codec("Withdraw")
	val, err := c.Encode(account.Withdraw{Amount: 5})
	if err != nil {
		t.Fatal(err)
	}
	m := commandMeta{reply: replyAddress{contentType: wire.ContentTypeAvro}}
	got, err := bt.decodeCommand(&m, val)
	if err != nil || got != aggregates.Command(account.Withdraw{Amount: 5}) || m.commandType != "Withdraw" {
		t.Fatalf("inferred from fingerprint: %v %#v %q", err, got, m.commandType)
	}
	m = commandMeta{commandType: "Deposit", reply: replyAddress{contentType: wire.ContentTypeAvro}}
	if _, err := bt.decodeCommand(&m, val); err == nil {
		t.Fatal("a Withdraw value accepted as a Deposit")
	}
}

// FuzzHandleInput feeds arbitrary keys, headers and values through header
// parsing and command decoding: they must return errors, never panic.
func FuzzHandleInput(f *testing.F) {
	reg := testRegistry(f)
	set, _ := schemas.LoadAccount()
	c, _ := set.Codec("Deposit")
	good, _ := c.Encode(account.Deposit{Amount: 1})
	f.Add([]byte("k"), "Deposit", "application/json", "3", []byte(`{"amount":1}`))
	f.Add([]byte("k"), "", "", "", good)
	f.Add([]byte(""), "OpenAccount", "application/json", "no_stream", []byte(`{"owner":"x","currency":"EUR"}`))
	f.Fuzz(func(t *testing.T, key []byte, typ, ct, expected string, value []byte) {
		r := &kgo.Record{Key: key, Value: value, Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte("id")},
			{Key: wire.HeaderAggregateType, Value: []byte("account")},
			{Key: wire.HeaderCommandType, Value: []byte(typ)},
			{Key: wire.HeaderContentType, Value: []byte(ct)},
			{Key: wire.HeaderExpectedVersion, Value: []byte(expected)},
		}}
		m, err := parseCommandMeta(r, "command_reply")
		if err != nil {
			return
		}
		cmd, err := reg.types["account"].decodeCommand(&m, value)
		if err == nil && cmd == nil {
			t.Fatal("nil command without error")
		}
	})
}

func TestRegistryListsWhatItServes(t *testing.T) {
	reg := testRegistry(t)
	if got := fmt.Sprint(reg.AggregateTypes(), reg.CommandTypes("account"), reg.EventTypes("account"), reg.CommandTypes("nope")); got !=
		"[account] [CloseAccount CompleteTransfer CreditForTransfer DebitForTransfer Deposit OpenAccount PayOutAndClose RefundTransfer Withdraw] [AccountClosed AccountOpened MoneyDeposited MoneyWithdrawn TransferCompleted TransferCreditRefused TransferCredited TransferDebited TransferRefunded] []" {
		t.Fatal(got)
	}
	if err := reg.Register(account.Type, nil); err == nil {
		t.Fatal("registered the same aggregate type twice")
	}
}

func TestRegisterReportsEveryMissingSchema(t *testing.T) {
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := schemas.LoadAccount()
	if err != nil {
		t.Fatal(err)
	}
	err = reg.Register(folder.Type, wrong)
	if err == nil {
		t.Fatal("folder registered with the account schemas")
	}
	for _, name := range []string{"CreateFolder", "RenameFolder", "DeleteFolder", "FolderCreated", "FolderRenamed", "FolderDeleted", `state "Folder"`} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

// TestContentTypeAnswers: media types are case-insensitive; a JSON value
// without the header, with a wrong one, or declared Avro is answered in JSON
// with a message naming the header; the code appears once in the message.
func TestContentTypeAnswers(t *testing.T) {
	base := func(ct string, value string) *kgo.Record {
		r := &kgo.Record{Key: []byte("a"), Value: []byte(value), Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte("c")},
			{Key: wire.HeaderAggregateType, Value: []byte("account")},
		}}
		if ct != "-" {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderContentType, Value: []byte(ct)})
		}
		return r
	}
	for _, ct := range []string{"application/JSON", "Application/Json; charset=UTF-8", " application/json "} {
		m, err := parseCommandMeta(base(ct, `{"amount":1}`), "command_reply")
		if err != nil || m.reply.contentType != wire.ContentTypeJSON {
			t.Errorf("content-type %q: %v, reply in %s; want JSON", ct, err, m.reply.contentType)
		}
	}
	m, err := parseCommandMeta(base("APPLICATION/VND.KCQRS.AVRO", "\xc3\x01"), "command_reply")
	if err != nil || m.reply.contentType != wire.ContentTypeAvro {
		t.Errorf("upper-case Avro content type: %v, %s", err, m.reply.contentType)
	}
	for _, c := range []struct{ ct, value string }{
		{"-", ` {"amount":1}`},
		{"text/plain", `{"amount":1}`},
		{wire.ContentTypeAvro, `{"amount":1}`},
	} {
		m, err := parseCommandMeta(base(c.ct, c.value), "command_reply")
		var ie *invalidError
		if !errors.As(err, &ie) || ie.code != CodeUnsupportedContent {
			t.Errorf("content-type %q, JSON value: %v, want %s", c.ct, err, CodeUnsupportedContent)
			continue
		}
		if m.reply.contentType != wire.ContentTypeJSON {
			t.Errorf("content-type %q, JSON value: reply in %s, want JSON", c.ct, m.reply.contentType)
		}
		if msg := ie.err.Error(); !strings.Contains(msg, "content-type") || !strings.Contains(msg, wire.ContentTypeJSON) {
			t.Errorf("content-type %q: message %q does not name the header and its value", c.ct, msg)
		}
		if n := strings.Count(err.Error(), CodeUnsupportedContent); n != 1 {
			t.Errorf("content-type %q: dead-letter error %q repeats the code", c.ct, err)
		}
	}
	// Avro without the header stays Avro, answered in Avro.
	m, err = parseCommandMeta(base("-", "\xc3\x01xx"), "command_reply")
	if err != nil || m.reply.contentType != wire.ContentTypeAvro {
		t.Errorf("Avro without header: %v, %s", err, m.reply.contentType)
	}
}

func TestUnknownCommandListsTheKnownOnes(t *testing.T) {
	bt := testRegistry(t).types["account"]
	m := commandMeta{commandType: "Teleport", reply: replyAddress{contentType: wire.ContentTypeJSON}}
	_, err := bt.decodeCommand(&m, []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "OpenAccount, PayOutAndClose") || !strings.Contains(err.Error(), "Deposit") {
		t.Fatalf("unknown command: %v, want the list of the account's commands", err)
	}
}

// TestRepeatedHeadersLastOneCounts: "when a header appears twice, the last
// one counts" (docs/wire-contract.md), also when an earlier one is
// malformed. Before, a malformed kcqrs_expected_version, kcqrs_deadline or
// kafka_replyPartition made the command bad_header even when a later,
// well-formed one followed.
func TestRepeatedHeadersLastOneCounts(t *testing.T) {
	p3 := binary.BigEndian.AppendUint32(nil, 3)
	for _, tc := range []struct {
		name   string
		key    string
		values [][]byte
		ok     bool
		check  func(commandMeta) bool
	}{
		{"version bad then good", wire.HeaderExpectedVersion, [][]byte{[]byte("x"), []byte("5")}, true,
			func(m commandMeta) bool { return m.expected == expectation{kind: expectExact, version: 5} }},
		{"version good then bad", wire.HeaderExpectedVersion, [][]byte{[]byte("5"), []byte("x")}, false, nil},
		{"deadline bad then good", wire.HeaderDeadline, [][]byte{[]byte("soon"), []byte("2030-01-02T03:04:05Z")}, true,
			func(m commandMeta) bool { return m.deadline.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) }},
		{"deadline good then bad", wire.HeaderDeadline, [][]byte{[]byte("2030-01-02T03:04:05Z"), []byte("soon")}, false, nil},
		{"partition short then good", wire.HeaderReplyPartition, [][]byte{{0, 1}, p3}, true,
			func(m commandMeta) bool { return m.reply.partitionSet && m.reply.partition == 3 }},
		{"partition good then short", wire.HeaderReplyPartition, [][]byte{p3, {0, 1}}, false,
			func(m commandMeta) bool { return !m.reply.partitionSet && m.reply.partition == -1 }},
		{"partition negative then good", wire.HeaderReplyPartition, [][]byte{{0xff, 0xff, 0xff, 0xfb}, p3}, true,
			func(m commandMeta) bool { return m.reply.partitionSet && m.reply.partition == 3 }},
	} {
		r := &kgo.Record{Key: []byte("a"), Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte("c")},
			{Key: wire.HeaderAggregateType, Value: []byte("account")},
		}}
		for _, v := range tc.values {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: tc.key, Value: v})
		}
		m, err := parseCommandMeta(r, "command_reply")
		var ie *invalidError
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v, want the last header to count", tc.name, err)
		case !tc.ok && (!errors.As(err, &ie) || ie.code != CodeBadHeader):
			t.Errorf("%s: err %v, want bad_header", tc.name, err)
		}
		if tc.check != nil && !tc.check(m) {
			t.Errorf("%s: meta %+v", tc.name, m)
		}
	}
}

// TestDeadlineIsRFC3339: kcqrs_deadline takes RFC 3339 date-times (section
// 5.6: "T" and "Z" may be lower case, any number of fraction digits) and
// nothing else. Before, Go's time.Parse took lower-case "t"/"z" for errors
// and took one-digit hours, comma fractions and offsets such as +24:00 or
// +01:60, none of which RFC 3339 allows.
func TestDeadlineIsRFC3339(t *testing.T) {
	want := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in string
		ok bool
		at time.Time
	}{
		{"2030-01-02T03:04:05Z", true, want},
		{"2030-01-02t03:04:05z", true, want},
		{"2030-01-02T04:04:05+01:00", true, want},
		{"2030-01-02T02:34:05-00:30", true, want},
		{"2030-01-02T03:04:05-00:00", true, want},
		{"2030-01-02T03:04:05.5Z", true, want.Add(500 * time.Millisecond)},
		{"2030-01-02T03:04:05.000000000001Z", true, want},
		{"2030-01-02T3:04:05Z", false, time.Time{}},
		{"2030-01-02T03:4:05Z", false, time.Time{}},
		{"2030-01-02T03:04:05,5Z", false, time.Time{}},
		{"2030-01-02T03:04:05.Z", false, time.Time{}},
		{"2030-01-02T03:04:05+24:00", false, time.Time{}},
		{"2030-01-02T03:04:05+01:60", false, time.Time{}},
		{"2030-01-02T03:04:05+0100", false, time.Time{}},
		{"2030-01-02T03:04:05+01", false, time.Time{}},
		{"2030-01-02T03:04:05", false, time.Time{}},
		{"2030-01-02 03:04:05Z", false, time.Time{}},
		{"2030-01-02", false, time.Time{}},
		{" 2030-01-02T03:04:05Z", false, time.Time{}},
		{"2030-01-02T03:04:05Z ", false, time.Time{}},
		{"2030-13-02T03:04:05Z", false, time.Time{}},
		{"2030-02-30T03:04:05Z", false, time.Time{}},
		{"+2030-01-02T03:04:05Z", false, time.Time{}},
		{"２030-01-02T03:04:05Z", false, time.Time{}},
		{"1893456000", false, time.Time{}},
		{"", false, time.Time{}},
	} {
		r := &kgo.Record{Key: []byte("a"), Headers: []kgo.RecordHeader{
			{Key: wire.HeaderCommandID, Value: []byte("c")},
			{Key: wire.HeaderAggregateType, Value: []byte("account")},
			{Key: wire.HeaderDeadline, Value: []byte(tc.in)},
		}}
		m, err := parseCommandMeta(r, "command_reply")
		var ie *invalidError
		switch {
		case tc.ok && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.ok && !m.deadline.Equal(tc.at):
			t.Errorf("%q: deadline %v, want %v", tc.in, m.deadline, tc.at)
		case !tc.ok && (!errors.As(err, &ie) || ie.code != CodeBadHeader):
			t.Errorf("%q: err %v, want bad_header", tc.in, err)
		}
	}
}

// TestAvroCommandStringsMustBeUTF8: Avro strings are UTF-8 (the Avro spec;
// the contract says so of JSON commands, whose decoder refuses other
// bytes). Before, an Avro command carrying other bytes in a string was
// decoded and applied: an owner that no JSON reader gets back as sent, a
// transfer target that cannot be a key.
func TestAvroCommandStringsMustBeUTF8(t *testing.T) {
	reg := testRegistry(t)
	bt := reg.types["account"]
	set, _ := schemas.LoadAccount()
	for _, cmd := range []aggregates.Command{
		account.OpenAccount{Owner: "a\xffb", Currency: "EUR"},
		account.OpenAccount{Owner: "ok", Currency: "EU\xc3"},
		account.DebitForTransfer{TransferID: "t", To: "acc-\xed\xa0\x80", Amount: 1},
	} {
		c, _ := set.Codec(cmd.CommandType())
		val, err := c.Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		m := commandMeta{reply: replyAddress{contentType: wire.ContentTypeAvro}}
		got, err := bt.decodeCommand(&m, val)
		if err == nil {
			err = checkStringsUTF8(got)
		}
		var ie *invalidError
		if !errors.As(err, &ie) || ie.code != CodeUndecodable || !strings.Contains(err.Error(), "not UTF-8") {
			t.Errorf("%#v: err %v, want undecodable", cmd, err)
		}
	}
	c, _ := set.Codec("OpenAccount")
	val, _ := c.Encode(account.OpenAccount{Owner: "Zoë ✓", Currency: "EUR"})
	m := commandMeta{reply: replyAddress{contentType: wire.ContentTypeAvro}}
	got, err := bt.decodeCommand(&m, val)
	if err == nil {
		err = checkStringsUTF8(got)
	}
	if err != nil || got.(account.OpenAccount).Owner != "Zoë ✓" {
		t.Fatalf("UTF-8 owner: %v %#v", err, got)
	}
}

// TestNonUTF8AvroStringIsAnsweredUndecodable: through the command path, an
// Avro command with a string that is not UTF-8 is INVALID undecodable and
// dead-lettered, and has no effect; a restricted command (a saga leg,
// signed) is exempt: its strings are aggregate ids, which may be any bytes.
func TestNonUTF8AvroStringIsAnsweredUndecodable(t *testing.T) {
	c := newCommandPath(t)
	key := []byte("signing-key")
	c.p.cfg.CommandSigningKey = key
	c.p.cfg.InternalCommands = map[string][]string{"account": {"CreditForTransfer"}}
	var out []*kgo.Record
	c.p.cfg.hooks = &testHooks{produce: func(r *kgo.Record, promise func(*kgo.Record, error)) {
		out = append(out, r)
		promise(r, nil)
	}}
	bt := c.p.reg.types["account"]
	open, _ := bt.commands["OpenAccount"].codec.Encode(account.OpenAccount{Owner: "x\xff", Currency: "EUR"})
	c.command("bad-open", 1_000_001, "OpenAccount", open)
	credit, _ := bt.commands["CreditForTransfer"].codec.Encode(account.CreditForTransfer{TransferID: "t", From: "src-\xff", DebitVersion: 1, Amount: 5, Seq: 1})
	r := c.record("credit", 1, "CreditForTransfer", credit)
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderSignature,
		Value: SignCommand(key, "credit", "account", string(r.Key), "CreditForTransfer", credit)})
	c.handle(r)
	c.commit()
	statuses := map[string]string{}
	dead := 0
	for _, r := range out {
		switch r.Topic {
		case c.p.cfg.Topics.Replies:
			rep, err := c.p.reg.DecodeReply(r.Value, wire.ContentTypeAvro)
			if err != nil {
				t.Fatal(err)
			}
			statuses[rep.CommandID] = string(rep.Status) + " " + rep.Code
		case c.p.cfg.Topics.DeadLetters:
			dead++
		}
	}
	if got := statuses["bad-open"]; got != "INVALID undecodable" || dead != 1 {
		t.Errorf("non-UTF-8 owner: %q, %d dead letters, want INVALID undecodable and 1", got, dead)
	}
	if got := statuses["credit"]; got != "ACCEPTED " {
		t.Errorf("signed credit from a non-UTF-8 source: %q, want ACCEPTED", got)
	}
}

// TestPartitionForANullKeyIsMurmur2: a keyless command's reply (without a
// correlation id) and dead letter go to murmur2 of the empty key, as the
// contract says (murmur2 of the key). Before, a nil key took franz-go's
// sticky random partitioner: a partition changing from call to call, from
// state shared by every caller without a lock (a data race between workers
// of one process).
func TestPartitionForANullKeyIsMurmur2(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := int32(1); n <= 64; n++ {
				if got, want := PartitionFor(nil, n+int32(g)), PartitionFor([]byte{}, n+int32(g)); got != want {
					t.Errorf("PartitionFor(nil, %d) = %d, PartitionFor(empty) = %d", n+int32(g), got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestValueOmittedIsTheValueSize: a dead letter without its value carries
// kcqrs_dlq_value_omitted, "the value's size in bytes" (the contract).
// Before, it held the size of the whole record as Kafka frames it (key,
// headers and overhead included).
func TestValueOmittedIsTheValueSize(t *testing.T) {
	c := newCommandPath(t)
	var out []*kgo.Record
	c.p.cfg.hooks = &testHooks{produce: func(r *kgo.Record, promise func(*kgo.Record, error)) {
		out = append(out, r)
		promise(r, nil)
	}}
	r := c.record("big", 1, "Deposit", []byte(strings.Repeat("v", 5000)))
	c.b = &batch{}
	c.p.produceDeadLetter(c.b, r, errors.New("too_large: test"), false)
	if len(out) != 1 {
		t.Fatalf("%d records, want the dead letter", len(out))
	}
	var omitted string
	for _, h := range out[0].Headers {
		if h.Key == wire.HeaderDLQValueOmitted {
			omitted = string(h.Value)
		}
	}
	if out[0].Value != nil || omitted != "5000" {
		t.Fatalf("dead letter with %d value bytes, %s %q, want no value and 5000", len(out[0].Value), wire.HeaderDLQValueOmitted, omitted)
	}
}

// TestMisnamedHeaderIsNamedInTheAnswer: header names are case-sensitive
// (the contract); a command refused for a missing header that it carries
// under another case (Content-Type, as HTTP clients write it) says so.
// Before, the answer said only that the header was missing.
func TestMisnamedHeaderIsNamedInTheAnswer(t *testing.T) {
	r := &kgo.Record{Key: []byte("a"), Value: []byte(`{"amount":1}`), Headers: []kgo.RecordHeader{
		{Key: "Content-Type", Value: []byte(wire.ContentTypeJSON)},
		{Key: "KCQRS_COMMAND_ID", Value: []byte("c")},
		{Key: wire.HeaderAggregateType, Value: []byte("account")},
		{Key: wire.HeaderCommandType, Value: []byte("Deposit")},
	}}
	_, err := parseCommandMeta(r, "command_reply")
	var ie *invalidError
	if !errors.As(err, &ie) || ie.code != CodeUnsupportedContent {
		t.Fatalf("err %v, want %s", err, CodeUnsupportedContent)
	}
	for _, want := range []string{`"Content-Type" is not content-type`, `"KCQRS_COMMAND_ID" is not kcqrs_command_id`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the answer does not say %q:\n%v", want, err)
		}
	}
}
