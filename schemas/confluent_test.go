package schemas

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

func newFakeRegistry(t *testing.T) (*srfake.Registry, *sr.Client) {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return reg, cl
}

// TestConfluentRoundTrip: single-object data becomes the Confluent wire
// format with the id the registry gave the record's subject, and back
// byte for byte, also through a second translator that learns the id from
// the registry.
func TestConfluentRoundTrip(t *testing.T) {
	reg, cl := newFakeRegistry(t)
	set := allSets(t)
	ctx := context.Background()
	c := NewConfluent(cl, set)
	for _, s := range samples()[:4] {
		codec := mustCodec(t, set, s.name)
		data, err := codec.Encode(s.value)
		if err != nil {
			t.Fatal(err)
		}
		conf, err := c.FromSingleObject(ctx, data)
		if err != nil {
			t.Fatal(err)
		}
		if !IsConfluent(conf) || IsConfluent(data) {
			t.Fatalf("%s: IsConfluent wrong", s.name)
		}
		ss, ok := reg.GetSchema(codec.Name(), 1)
		if !ok || ss.Schema.Schema != codec.Source() {
			t.Fatalf("%s: not registered under its record name: %+v", s.name, ss)
		}
		id, body, err := new(sr.ConfluentHeader).DecodeID(conf)
		if err != nil || id != ss.ID || !bytes.Equal(body, data[HeaderLen:]) {
			t.Fatalf("%s: Confluent framing: id %d (want %d), err %v", s.name, id, ss.ID, err)
		}
		for _, tr := range []*Confluent{c, NewConfluent(cl, set)} {
			back, err := tr.ToSingleObject(ctx, conf)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, data) {
				t.Fatalf("%s: round trip changed the bytes", s.name)
			}
		}
	}
}

// TestConfluentOldVersion: data of an old schema version registered in the
// registry comes back with that version's fingerprint, so Codec.Decode
// resolves it to the current schema.
func TestConfluentOldVersion(t *testing.T) {
	_, cl := newFakeRegistry(t)
	set, err := Load(os.DirFS("testdata"), "accountv2")
	if err != nil {
		t.Fatal(err)
	}
	old, _ := set.Versions("Account")
	data, err := old[0].avro.BinaryFromNative(old[0].header[:], map[string]any{"status": "open", "owner": "o", "currency": "EUR", "balance": int64(5)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conf, err := NewConfluent(cl, set).FromSingleObject(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	back, err := NewConfluent(cl, set).ToSingleObject(ctx, conf)
	if err != nil {
		t.Fatal(err)
	}
	var got accountV2
	if err := mustCodec(t, set, "Account").Decode(back, &got); err != nil {
		t.Fatal(err)
	}
	if want := (accountV2{Status: "open", Owner: "o", Currency: "EUR", Balance: 5, Channel: "unknown"}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// TestConfluentErrors: a schema id the set does not know, bad framing and an
// unreachable registry are errors, never a panic or a wrong schema.
func TestConfluentErrors(t *testing.T) {
	reg, cl := newFakeRegistry(t)
	set := allSets(t)
	ctx := context.Background()
	c := NewConfluent(cl, set)
	foreign, _, err := reg.RegisterSchema("other", sr.Schema{Schema: `{"type":"record","name":"Other","fields":[]}`, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := new(sr.ConfluentHeader).AppendEncode(nil, foreign, nil)
	var ue *UnknownSchemaError
	if _, err := c.ToSingleObject(ctx, data); !errors.As(err, &ue) || !strings.Contains(err.Error(), "Other") {
		t.Fatalf("foreign schema: %v", err)
	}
	missing, _ := new(sr.ConfluentHeader).AppendEncode(nil, 999, nil)
	if _, err := c.ToSingleObject(ctx, missing); err == nil || !strings.Contains(err.Error(), "schema id 999") {
		t.Fatalf("missing id: %v", err)
	}
	if _, err := c.ToSingleObject(ctx, []byte{0xC3, 0x01, 0}); err == nil {
		t.Fatal("single-object data accepted as Confluent")
	}
	if _, err := c.FromSingleObject(ctx, []byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}); !errors.As(err, &ue) {
		t.Fatalf("unknown fingerprint: %v", err)
	}
	reg.Close()
	codec := mustCodec(t, set, "kcqrs.Reply")
	reply, err := codec.Encode(sampleReply())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.FromSingleObject(ctx, reply); err == nil || !strings.Contains(err.Error(), "registering kcqrs.Reply v1") {
		t.Fatalf("registry down: %v", err)
	}
}
