package topology_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/projection"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestOwnerLookupWithMasterKey: with personal data on, the owners index is
// blind (an HMAC of the owner under the master key's lookup key), so
// /v1/owners/{owner}/accounts finds an owner's accounts although every
// table holds the owner sealed, shows the owner opened, and no longer lists
// an erased account, whose index entry is deleted from the owners table.
// Neither owner name is anywhere in the projector's stores or topics.
func TestOwnerLookupWithMasterKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	mk := masterKey(t, 11)
	h.StartProcessor("w0", "", withMaster(mk))
	const alice, bob = "Alice Liddell-71c3", "Bob Builder-9d2e"
	for _, a := range []struct{ id, owner string }{{"acc-a1", alice}, {"acc-a2", alice}, {"acc-b1", bob}} {
		wantStatus(t, h.Send(cmd("account", a.id, "OpenAccount", `{"owner":"`+a.owner+`","currency":"EUR"}`)), wire.StatusAccepted, 1)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ring := shred.NewKeyring()
	loaded := make(chan struct{})
	go func() {
		_ = topology.FollowKeys(ctx, append([]kgo.Opt{kgo.SeedBrokers(h.Brokers...)}, h.ClientOpts...), h.Topic(topology.DefaultKeysTopic), mk, ring, func() { close(loaded) })
	}()
	<-loaded
	idx, err := shred.NewBlindIndex(mk, projection.OwnerIndexPurpose)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	projDir := t.TempDir()
	svc, err := projection.StartService(ctx, projection.ServiceConfig{
		Project: true, Addr: "127.0.0.1:0", OpenPersonal: topology.PersonalOpener(ring),
		Projection: projection.Config{Brokers: h.Brokers, StateDir: projDir, Registry: reg,
			Personal: &projection.Personal{Keys: ring, Owners: idx},
			Logger:   slog.New(slog.NewTextHandler(io.Discard, nil))},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = svc.Wait() }()

	lookup := func(owner string) (ids []string, owners []string) {
		resp, err := http.Get("http://" + svc.Addr() + "/v1/owners/" + url.PathEscape(owner) + "/accounts")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusServiceUnavailable { // none, or views not ready
			return nil, nil
		}
		var r projection.OwnerResponse
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&r) != nil {
			t.Fatalf("lookup of %q: %s", owner, resp.Status)
		}
		for _, a := range r.Accounts {
			ids, owners = append(ids, a.ID), append(owners, a.Owner)
		}
		return ids, owners
	}
	want := func(owner string, wantIDs ...string) {
		t.Helper()
		var ids, owners []string
		pollUntil(t, "the accounts of "+owner+" to be "+strings.Join(wantIDs, ","), 60*time.Second, func() bool {
			ids, owners = lookup(owner)
			return slices.Equal(ids, wantIDs)
		})
		for _, o := range owners {
			if o != owner {
				t.Fatalf("lookup of %q shows owner %q, want it opened", owner, o)
			}
		}
	}
	want(alice, "acc-a1", "acc-a2")
	want(bob, "acc-b1")
	// An account opened while the projector runs: its key and its first
	// event commit together, and the fold waits for the key to be followed.
	wantStatus(t, h.Send(cmd("account", "acc-b2", "OpenAccount", `{"owner":"`+bob+`","currency":"EUR"}`)), wire.StatusAccepted, 1)
	want(bob, "acc-b1", "acc-b2")
	if ids, _ := lookup("Alice"); len(ids) != 0 {
		t.Fatalf("a lookup of a prefix of the name found %v", ids)
	}

	wantStatus(t, rawSend(t, h, eraseRecord(t, h, mk, "acc-a2")), wire.StatusAccepted, 1)
	want(alice, "acc-a1")
	want(bob, "acc-b1", "acc-b2")

	// The entry is deleted from the owners table (its latest record is a
	// tombstone), not merely hidden by the query server.
	ownersTable := string(projection.TableOf(projection.Names{}.OwnersGroup()))
	erasedKey := projection.OwnerKey(idx.Sum(alice), "acc-a2")
	pollUntil(t, "the erased account's owners-index entry to be deleted", 60*time.Second, func() bool {
		var last *kgo.Record
		for _, r := range h.ReadTopic(ownersTable) {
			if string(r.Key) == erasedKey {
				last = r
			}
		}
		return last != nil && last.Value == nil
	})

	// A rebuild from scratch (version 2) after the erasure never indexes
	// the erased account: no entry for it is ever written.
	v2Dir := t.TempDir()
	v2, err := projection.StartService(ctx, projection.ServiceConfig{
		Project: true, NoHTTP: true,
		Projection: projection.Config{Brokers: h.Brokers, StateDir: v2Dir, Registry: reg, Names: projection.Names{Version: 2},
			Personal: &projection.Personal{Keys: ring, Owners: idx},
			Logger:   slog.New(slog.NewTextHandler(io.Discard, nil))},
	})
	if err != nil {
		t.Fatal(err)
	}
	readyCtx, readyCancel := context.WithTimeout(ctx, 60*time.Second)
	defer readyCancel()
	if err := v2.Projector.WaitReady(readyCtx); err != nil {
		t.Fatal(err)
	}
	v2Table := string(projection.TableOf(projection.Names{Version: 2}.OwnersGroup()))
	v2Keys := func() []string {
		var keys []string
		for _, r := range h.ReadTopic(v2Table) {
			keys = append(keys, string(r.Key))
		}
		slices.Sort(keys)
		return keys
	}
	wantV2 := []string{projection.OwnerKey(idx.Sum(alice), "acc-a1"), projection.OwnerKey(idx.Sum(bob), "acc-b1"), projection.OwnerKey(idx.Sum(bob), "acc-b2")}
	slices.Sort(wantV2)
	pollUntil(t, "the rebuilt owners index", 60*time.Second, func() bool { return len(v2Keys()) >= len(wantV2) })
	if got := v2Keys(); !slices.Equal(got, wantV2) {
		t.Fatalf("rebuilt owners index holds %v, want %v (nothing of the erased account)", got, wantV2)
	}

	// No owner name in plain anywhere but the commands topic (the client's
	// input, docs/erasure.md): the index holds HMACs.
	cancel()
	if err := svc.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := v2.Wait(); err != nil {
		t.Fatal(err)
	}
	h.Cluster.Compact()
	for _, hit := range scanFor(t, h, []string{projDir, v2Dir}, map[string][]byte{"alice": []byte("Alice Liddell"), "bob": []byte("Bob Builder")}) {
		if !strings.Contains(hit, " in commands@") {
			t.Errorf("owner name in plain: %s", hit)
		}
	}
}
