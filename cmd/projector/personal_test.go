package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/embedded"
	"github.com/kcqrs/kcqrs/shred"
)

// TestStoppedKeyFollowerOpensNothing: once the projector's follower of the
// keys topic stops (here on a key record of another master key, written by
// a misconfigured worker), erasures no longer reach it; the query API must
// then stop opening personal fields rather than go on showing the plaintext
// of subjects erased since.
func TestStoppedKeyFollowerOpensNothing(t *testing.T) {
	t.Parallel()
	c, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	cl, err := kgo.NewClient(append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "kcqrs-keys"); err != nil {
		t.Fatal(err)
	}
	master := func(b byte) *shred.MasterKey {
		m, err := shred.NewMasterKey(bytes.Repeat([]byte{b}, shred.KeyLen))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	mk1, mk2 := master(1), master(2)
	put := func(subject string, value []byte) {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "kcqrs-keys", Key: []byte(subject), Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	keyRecord := func(mk *shred.MasterKey, subject string) (shred.DataKey, []byte) {
		k, err := shred.NewDataKey()
		if err != nil {
			t.Fatal(err)
		}
		v, err := shred.EncodeKeyRecord(mk, subject, k)
		if err != nil {
			t.Fatal(err)
		}
		return k, v
	}
	k, v := keyRecord(mk1, "account/a1")
	put("account/a1", v)
	sealed, err := shred.Seal("account/a1", &k, "Canary Carl")
	if err != nil {
		t.Fatal(err)
	}
	open, _, err := followKeys(ctx, opts, &settings{keysTopic: "kcqrs-keys", masterKey: mk1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got := open("account", "a1", sealed); got != "Canary Carl" {
		t.Fatalf("before: %q", got)
	}
	_, v2 := keyRecord(mk2, "account/b1")
	put("account/b1", v2)
	// Not an assertion on time: a pause so that the erasure comes in a
	// later fetch than the record that stops the follower (a follower
	// that applied it in the same fetch would pass without the fix).
	time.Sleep(time.Second)
	put("account/a1", shred.ErasedMarker)
	for open("account", "a1", sealed) == "Canary Carl" {
		if ctx.Err() != nil {
			t.Fatal("the plaintext of an erased subject is still served")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
