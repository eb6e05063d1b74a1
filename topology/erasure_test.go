package topology_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/projection"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// TestErasureCanary is issue 17's canary: a canary in the owner field reads
// back before erasure; after erasure and a compaction of the keys topic and
// the changelog, neither the canary nor the subject's key material is in any
// topic (committed or aborted records) or any Pebble store, while the
// aggregate's events still fold to the right balance, its owner erased.
func TestErasureCanary(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.RequireEmbedded()
	mk := masterKey(t, 7)
	w0 := h.StartProcessor("w0", "", withMaster(mk))

	const canary = "CANARY-Zoë-8c41f2"
	wantStatus(t, h.Send(cmd("account", "victim", "OpenAccount", `{"owner":"`+canary+`","currency":"EUR"}`)), wire.StatusAccepted, 1)
	wantStatus(t, h.Send(cmd("account", "victim", "Deposit", `{"amount":1000}`)), wire.StatusAccepted, 2)
	wantStatus(t, h.Send(cmd("account", "victim", "Withdraw", `{"amount":300}`)), wire.StatusAccepted, 3)
	wantStatus(t, h.Send(cmd("account", "keeper", "OpenAccount", `{"owner":"Keeper Kim","currency":"EUR"}`)), wire.StatusAccepted, 1)

	// At rest: ciphertext only, everywhere the processor writes.
	if h.Registry.Keyring() != nil {
		t.Fatal("New turned personal data on in the caller's registry (shared with a saga in the same process)")
	}
	dataKey, ok := w0.Keyring().Lookup("account/victim")
	if !ok {
		t.Fatal("no data key for account/victim")
	}
	var wrapped []byte
	for _, r := range h.ReadTopic(h.Topic(topology.DefaultKeysTopic)) {
		if string(r.Key) == "account/victim" {
			if wrapped != nil {
				t.Fatal("two key records for account/victim: a key must be created once")
			}
			wrapped = bytes.Clone(r.Value)
		}
	}
	if wrapped == nil {
		t.Fatal("no key record for account/victim in kcqrs-keys")
	}
	needles := map[string][]byte{
		"canary":             []byte(canary),
		"data key":           dataKey.Key[:],
		"data key (base64)":  []byte(base64.StdEncoding.EncodeToString(dataKey.Key[:])[:40]),
		"wrapped key":        wrapped[len(wrapped)-40:],
		"wrapped key record": wrapped,
	}
	// Only the commands topic (the client's own input) holds the canary.
	for _, hit := range scanFor(t, h, []string{w0.StateDir}, map[string][]byte{"canary": []byte(canary)}) {
		if !strings.HasPrefix(hit, "canary in commands@") {
			t.Errorf("before erasure, plaintext outside the commands topic: %s", hit)
		}
	}
	// Decodes normally, with the keys.
	keyed, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	if err := keyed.EnablePersonal(w0.Keyring()); err != nil {
		t.Fatal(err)
	}
	var victimState any
	for _, r := range h.ReadTopic("snapshots-changelog") {
		if s, st, err := keyed.DecodeSnapshot(r.Value); err != nil {
			t.Fatal(err)
		} else if s.AggregateID == "victim" {
			victimState = st
		}
	}
	if st := victimState.(account.Account); st.Owner != canary || st.Balance != 700 {
		t.Fatalf("state before erasure: %+v", st)
	}

	// A reader without the processor (the query API) follows the keys
	// topic: it opens the sealed owner as the projector stores it.
	plainReg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	var sealedOwner string
	for _, r := range h.ReadTopic("events") {
		if _, ev, err := plainReg.DecodeEvent(r.Value); err == nil {
			if e, ok := ev.(account.AccountOpened); ok && strings.HasPrefix(string(r.Key), "victim") {
				sealedOwner = e.Owner
			}
		}
	}
	if !shred.IsSealed(sealedOwner) {
		t.Fatalf("without keys the victim's owner decodes as %q, want sealed text", sealedOwner)
	}
	followCtx, stopFollow := context.WithCancel(context.Background())
	defer stopFollow()
	followed := shred.NewKeyring()
	loaded := make(chan struct{})
	go func() {
		_ = topology.FollowKeys(followCtx, append([]kgo.Opt{kgo.SeedBrokers(h.Brokers...)}, h.ClientOpts...), h.Topic(topology.DefaultKeysTopic), mk, followed, func() { close(loaded) })
	}()
	<-loaded
	open := topology.PersonalOpener(followed)
	if got := open("account", "victim", sealedOwner); got != canary {
		t.Fatalf("the follower opens the owner as %q", got)
	}
	// The read models: the projector stores what it decodes without keys
	// (sealed text); the query API opens it with the followed keys.
	projDir := t.TempDir()
	projCtx, stopProj := context.WithCancel(context.Background())
	svc, err := projection.StartService(projCtx, projection.ServiceConfig{
		Project: true, Addr: "127.0.0.1:0", OpenPersonal: open,
		Projection: projection.Config{Brokers: h.Brokers, StateDir: projDir, Registry: plainReg,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stopProj(); _ = svc.Wait() }()
	queryOwner := func() string {
		var a projection.Account
		resp, err := http.Get("http://" + svc.Addr() + "/v1/accounts/victim?min_version=3&wait=20s")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("query: %s", resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		return a.Owner
	}
	if got := queryOwner(); got != canary {
		t.Fatalf("read model owner before erasure: %q", got)
	}

	// Erasure needs the master key: a client that may only send commands
	// (no token, a token of another master key, another subject's token)
	// erases nothing.
	forged := []*kgo.Record{eraseRecord(t, h, mk, "victim"), eraseRecord(t, h, masterKey(t, 8), "victim"), eraseRecord(t, h, mk, "victim")}
	forged[0].Value = nil
	otherToken, _ := shred.EraseToken(mk, "account/keeper")
	forged[2].Value = otherToken
	for i, rec := range forged {
		rep := rawSend(t, h, rec)
		if rep.Status != wire.StatusInvalid || rep.Code != topology.CodeEraseRefused {
			t.Fatalf("forged erasure %d: %+v, want INVALID %s", i, rep, topology.CodeEraseRefused)
		}
	}
	wantStatus(t, h.Send(cmd("account", "victim", "Deposit", `{"amount":0}`)), wire.StatusRejected, 3)

	wantStatus(t, rawSend(t, h, eraseRecord(t, h, mk, "victim")), wire.StatusAccepted, 3)
	pollUntil(t, "the follower to learn the erasure", 30*time.Second, func() bool {
		return open("account", "victim", sealedOwner) == shred.Erased
	})
	if got := queryOwner(); got != shred.Erased {
		t.Fatalf("read model owner after erasure: %q", got)
	}
	stopProj()
	if err := svc.Wait(); err != nil {
		t.Fatal(err)
	}
	rep := h.Send(cmd("account", "victim", "Deposit", `{"amount":5}`))
	if rep.Status != wire.StatusRejected || rep.Code != topology.CodeErased {
		t.Fatalf("deposit on an erased account: %+v, want REJECTED %s", rep, topology.CodeErased)
	}
	wantStatus(t, h.Send(cmd("account", "keeper", "Deposit", `{"amount":5}`)), wire.StatusAccepted, 2)

	// The operator's part (docs/erasure.md): the commands topic is deleted
	// up to what the processor consumed (retention does this in time).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := h.Admin().ListEndOffsets(ctx, "commands")
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if err := h.Cluster.DeleteRecords("commands", o.Partition, o.Offset); err != nil {
			t.Fatal(err)
		}
	})
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	h.Cluster.Compact()

	for _, hit := range scanFor(t, h, []string{w0.StateDir, projDir}, needles) {
		t.Errorf("after erasure: %s", hit)
	}

	// The log still works: a fresh registry, without the data key, folds
	// the victim's events to the right balance with the owner erased.
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	ring := shred.NewKeyring()
	for _, r := range h.ReadTopic(h.Topic(topology.DefaultKeysTopic)) {
		switch {
		case shred.IsErasedMarker(r.Value):
			ring.Delete(string(r.Key))
		case r.Value != nil:
			k, err := shred.DecodeKeyRecord(mk, string(r.Key), r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if err := ring.Put(string(r.Key), k); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ring.Has("account/victim") || !ring.Erased("account/victim") || !ring.Has("account/keeper") {
		t.Fatalf("keys topic after compaction: victim has key %v, erased %v; keeper has key %v",
			ring.Has("account/victim"), ring.Erased("account/victim"), ring.Has("account/keeper"))
	}
	if err := reg.EnablePersonal(ring); err != nil {
		t.Fatal(err)
	}
	var victim, keeper [][]byte
	for _, r := range h.ReadTopic("events") {
		env, _, err := reg.DecodeEvent(r.Value)
		if err != nil {
			t.Fatalf("event %d/%d after erasure: %v", r.Partition, r.Offset, err)
		}
		switch env.AggregateID {
		case "victim":
			victim = append(victim, r.Value)
		case "keeper":
			keeper = append(keeper, r.Value)
		}
	}
	st, v, err := reg.ReplayState("account", "victim", victim)
	if err != nil {
		t.Fatal(err)
	}
	if a := st.(account.Account); v != 3 || a.Balance != 700 || a.Owner != shred.Erased || a.Currency != "EUR" {
		t.Fatalf("victim folds to %+v at %d, want balance 700, owner %q, at 3", a, v, shred.Erased)
	}
	st, v, err = reg.ReplayState("account", "keeper", keeper)
	if err != nil {
		t.Fatal(err)
	}
	if a := st.(account.Account); v != 2 || a.Owner != "Keeper Kim" {
		t.Fatalf("keeper folds to %+v at %d", a, v)
	}

	// A new worker (fresh registry and store) learns the erasure from the
	// keys topic: the victim stays erased, the keeper readable.
	h.Registry, err = examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	h.StartProcessor("w1", "", withMaster(mk))
	rep = h.Send(cmd("account", "victim", "Deposit", `{"amount":5}`))
	if rep.Status != wire.StatusRejected || rep.Code != topology.CodeErased {
		t.Fatalf("after a restart, deposit on the erased account: %+v", rep)
	}
	wantStatus(t, h.Send(cmd("account", "keeper", "Deposit", `{"amount":5}`)), wire.StatusAccepted, 3)
	var keeperState any
	for _, r := range h.ReadTopic("snapshots-changelog") {
		if r.Value == nil {
			if string(r.Key) != "account/victim" {
				t.Fatalf("tombstone for %s", r.Key)
			}
			continue
		}
		s, st, err := reg.DecodeSnapshot(r.Value)
		if err != nil {
			t.Fatalf("snapshot %s: %v", r.Key, err)
		}
		if s.AggregateID == "keeper" {
			keeperState = st
		}
	}
	if a := keeperState.(account.Account); a.Owner != "Keeper Kim" || a.Balance != 10 {
		t.Fatalf("keeper after restart: %+v", a)
	}
}

// TestWrongMasterKeyStopsTheStart: keys written under one master key and a
// worker configured with another: Run fails with a WrongMasterKeyError
// before it serves anything, never reading personal fields as "erased".
func TestWrongMasterKeyStopsTheStart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w0 := h.StartProcessor("w0", "", withMaster(masterKey(t, 1)))
	wantStatus(t, h.Send(cmd("account", "a1", "OpenAccount", `{"owner":"Ann","currency":"EUR"}`)), wire.StatusAccepted, 1)
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	var err error
	if h.Registry, err = examples.Registry(); err != nil {
		t.Fatal(err)
	}
	w1 := h.StartProcessor("w1", "", withMaster(masterKey(t, 2)))
	select {
	case <-w1.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("a worker with the wrong master key kept running")
	}
	var wm *shred.WrongMasterKeyError
	if !errors.As(w1.Err(), &wm) {
		t.Fatalf("Run ended with %v, want a *shred.WrongMasterKeyError", w1.Err())
	}
}

// TestPersonalKeysUnderUnconfirmedCommits: every commit is applied by the
// broker but answered with an error, so the worker forgets the keys its
// batches created and reloads them from the keys topic before the next use.
// Each subject still gets exactly one key, every event opens with it, and
// an erasure in the same conditions holds.
func TestPersonalKeysUnderUnconfirmedCommits(t *testing.T) {
	t.Parallel()
	mk := masterKey(t, 9)
	h, _ := embeddedWorker(t, withMaster(mk))
	unconfirmCommits(t, h, false, nil)
	ids := []string{"u0", "u1", "u2", "u3", "u4", "u5"}
	for _, id := range ids {
		wantStatus(t, h.Send(cmd("account", id, "OpenAccount", `{"owner":"Owner of `+id+`","currency":"EUR"}`)), wire.StatusAccepted, 1)
	}
	for _, id := range ids {
		wantStatus(t, h.Send(cmd("account", id, "Deposit", `{"amount":40}`)), wire.StatusAccepted, 2)
	}
	wantStatus(t, rawSend(t, h, eraseRecord(t, h, mk, "u2")), wire.StatusAccepted, 2)
	rep := h.Send(cmd("account", "u2", "Deposit", `{"amount":1}`))
	if rep.Code != topology.CodeErased {
		t.Fatalf("deposit on the erased u2: %+v", rep)
	}
	wantStatus(t, h.Send(cmd("account", "u3", "Withdraw", `{"amount":15}`)), wire.StatusAccepted, 3)

	ring := keyringFromTopic(t, h, mk)
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.EnablePersonal(ring); err != nil {
		t.Fatal(err)
	}
	values := map[string][][]byte{}
	for _, r := range h.ReadTopic("events") {
		env, _, err := reg.DecodeEvent(r.Value)
		if err != nil {
			t.Fatalf("event %d/%d: %v", r.Partition, r.Offset, err)
		}
		values[env.AggregateID] = append(values[env.AggregateID], r.Value)
	}
	for _, id := range ids {
		st, v, err := reg.ReplayState("account", id, values[id])
		if err != nil {
			t.Fatal(err)
		}
		a := st.(account.Account)
		wantOwner, wantBalance, wantVersion := "Owner of "+id, int64(40), int64(2)
		switch id {
		case "u2":
			wantOwner = shred.Erased
		case "u3":
			wantBalance, wantVersion = 25, 3
		}
		if a.Owner != wantOwner || a.Balance != wantBalance || v != wantVersion {
			t.Errorf("%s folds to owner %q balance %d at %d; want %q %d at %d", id, a.Owner, a.Balance, v, wantOwner, wantBalance, wantVersion)
		}
	}
}

// TestEraseSubjectAPI: the Go path sends the erasure; the aggregate is then
// rejected "erased" and its owner reads "[erased]" in its events.
func TestEraseSubjectAPI(t *testing.T) {
	t.Parallel()
	mk := masterKey(t, 4)
	h := newHarness(t)
	h.StartProcessor("w0", "", withMaster(mk))
	wantStatus(t, h.Send(cmd("account", "api-1", "OpenAccount", `{"owner":"Api Anna","currency":"EUR"}`)), wire.StatusAccepted, 1)
	prod, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(h.Brokers...)}, h.ClientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := topology.EraseSubject(ctx, prod, h.Topics, mk, "account", "api-1", "erase-api-1"); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "the erasure to take effect", 30*time.Second, func() bool {
		return h.Send(cmd("account", "api-1", "Deposit", `{"amount":1}`)).Code == topology.CodeErased
	})
	if _, err := topology.EraseSubject(ctx, prod, h.Topics, mk, "account/x", "y", "z"); err == nil {
		t.Fatal("an aggregate type with a slash was accepted")
	}
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.EnablePersonal(keyringFromTopic(t, h, mk)); err != nil {
		t.Fatal(err)
	}
	for _, r := range h.ReadTopic("events") {
		_, ev, err := reg.DecodeEvent(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := ev.(account.AccountOpened); ok && e.Owner != shred.Erased {
			t.Fatalf("owner after erasure: %q", e.Owner)
		}
	}
}

// TestPersonalKeysFollowPartitionsAcrossWorkers: two workers (each with its
// own registry and keyring, as separate processes have) share the
// partitions; keys are created by both after both started. When w0 stops,
// w1 takes its partitions and must load the keys w0 created since w1's start
// (reloaded with the partition's store): every account then takes commands,
// and an account w0 served is erased by w1.
func TestPersonalKeysFollowPartitionsAcrossWorkers(t *testing.T) {
	t.Parallel()
	mk := masterKey(t, 5)
	h := newHarness(t)
	fresh := func() {
		reg, err := examples.Registry()
		if err != nil {
			t.Fatal(err)
		}
		h.Registry = reg
	}
	fresh()
	w0 := h.StartProcessor("w0", "", withMaster(mk))
	fresh()
	w1 := h.StartProcessor("w1", "", withMaster(mk))
	pollUntil(t, "both workers to own partitions", 60*time.Second, func() bool {
		return len(w0.Assigned()) > 0 && len(w1.Assigned()) > 0 && len(w0.Assigned())+len(w1.Assigned()) == partitions
	})
	ids := openPerPartition(t, h, "fp")
	var onW0 string
	for _, part := range w0.Assigned() {
		onW0 = ids[part]
	}
	if err := w0.Stop(); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "w1 to own every partition", 60*time.Second, func() bool { return len(w1.Assigned()) == partitions })
	for _, id := range ids {
		wantStatus(t, h.Send(cmd("account", id, "Deposit", `{"amount":7}`)), wire.StatusAccepted, 2)
	}
	wantStatus(t, rawSend(t, h, eraseRecord(t, h, mk, onW0)), wire.StatusAccepted, 2)
	if rep := h.Send(cmd("account", onW0, "Deposit", `{"amount":1}`)); rep.Code != topology.CodeErased {
		t.Fatalf("deposit on the erased %s: %+v", onW0, rep)
	}
	ring := keyringFromTopic(t, h, mk)
	for _, id := range ids {
		if id != onW0 && !ring.Has("account/"+id) {
			t.Errorf("no key for account/%s", id)
		}
	}
}

// TestKeysTopicMustBeCompacted: a keys topic deleted by retention would
// destroy every data key; the config check refuses it like a changelog.
func TestKeysTopicMustBeCompacted(t *testing.T) {
	topics := topology.Defaults().Topics
	topics.Keys = "kcqrs-keys"
	configs := map[string]map[string]string{
		"commands":            {"cleanup.policy": "delete"},
		"events":              {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1", "min.insync.replicas": "2"},
		"snapshots-changelog": {"cleanup.policy": "compact", "min.insync.replicas": "2"},
		"commands-dlq":        {"retention.ms": "-1"},
		"kcqrs-keys":          {"cleanup.policy": "compact", "min.insync.replicas": "2"},
	}
	if _, err := topology.CheckTopicConfigs(topics, configs); err != nil {
		t.Fatal(err)
	}
	for _, pol := range []string{"delete", "compact,delete"} {
		configs["kcqrs-keys"]["cleanup.policy"] = pol
		_, err := topology.CheckTopicConfigs(topics, configs)
		var tce *topology.TopicConfigError
		if !errors.As(err, &tce) || !strings.Contains(err.Error(), "kcqrs-keys") || !strings.Contains(err.Error(), "data keys") {
			t.Fatalf("keys topic with cleanup.policy=%s: %v", pol, err)
		}
	}
}

// TestPersonalPermissions: with a master key, a worker also needs to read
// and write the keys topic (and, as for every topic, create and describe it).
func TestPersonalPermissions(t *testing.T) {
	cfg := topology.Config{Personal: masterKey(t, 1), InstanceID: "w0"}
	want := map[kmsg.ACLOperation]bool{kmsg.ACLOperationRead: false, kmsg.ACLOperationWrite: false, kmsg.ACLOperationDescribeConfigs: false, kmsg.ACLOperationCreate: false}
	for _, p := range topology.ProcessorPermissions(cfg) {
		if p.Resource == "kcqrs-keys" {
			want[p.Operation] = true
		}
	}
	for op, ok := range want {
		if !ok {
			t.Errorf("no %s permission on kcqrs-keys", op)
		}
	}
	for _, p := range topology.ProcessorPermissions(topology.Config{InstanceID: "w0"}) {
		if p.Resource == "kcqrs-keys" {
			t.Fatalf("without a master key: %+v", p)
		}
	}
}
