package chaos

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// Erasures (Options.Erasures > 0): the workers run with a master key, so the
// owner of every account is sealed; accounts of their own (erasable-NNN,
// never in a transfer: transfers of erased accounts end, tested in saga,
// but the chaos check does not model them yet) are opened, given a deposit, and erased one after another
// while the kills go on, each followed by a deposit that must be REJECTED
// "erased". The check then reads the events with the keys from the keys
// topic: every erased account folds with its owner "[erased]" and its
// balance intact, its snapshot is its fold (owner "[erased]" in plain, no
// remembered reply); every other owner reads as written.

// chaosMasterKey is the run's master key (hex), given to every worker.
var chaosMasterKey = hex.EncodeToString(bytes.Repeat([]byte{0xc4}, shred.KeyLen))

func masterKey() *shred.MasterKey {
	b, _ := hex.DecodeString(chaosMasterKey)
	mk, err := shred.NewMasterKey(b)
	if err != nil {
		panic(err) // a constant key of the right length
	}
	return mk
}

// erasables opens the accounts to erase, each with one deposit.
func (r *run) erasables(ctx context.Context, cl *client.Client) []string {
	var ids []string
	for i := range r.o.Erasures {
		id := fmt.Sprintf("erasable-%03d", i)
		r.send(ctx, cl, outcome{account: id, typ: "OpenAccount"}, "open-"+id)
		r.send(ctx, cl, outcome{account: id, typ: "Deposit", amount: 100}, "fund-"+id)
		ids = append(ids, id)
	}
	return ids
}

// erase erases the accounts one by one, spread over the workload.
func (r *run) erase(ctx context.Context, cl *client.Client, ids []string) {
	mk := masterKey()
	for _, id := range ids {
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.between(500*time.Millisecond, 2*time.Second)):
		}
		token, err := shred.EraseToken(mk, "account/"+id)
		if err != nil {
			r.violate("erase %s: %v", id, err)
			return
		}
		cmd := client.Command{AggregateType: "account", AggregateID: id, Type: topology.EraseCommandType, ID: "erase-" + id, Avro: token}
		began := time.Now()
		for {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
			rep, err := cl.Send(sctx, cmd)
			cancel()
			// A retry after a lost reply finds the account erased already.
			if err == nil && (rep.Status == wire.StatusAccepted || rep.Code == topology.CodeErased) {
				break
			}
			if err == nil {
				r.violate("erasure of %s answered %s %s: %s", id, rep.Status, rep.Code, rep.Message)
				break
			}
			if time.Since(began) > 5*time.Minute {
				r.violate("erasure of %s never answered: %v", id, err)
				break
			}
		}
		r.mu.Lock()
		r.erased = append(r.erased, id)
		r.mu.Unlock()
		rep, ok := r.send(ctx, cl, outcome{account: id, typ: "Deposit", amount: 1}, "after-erase-"+id)
		if ok && (rep.Status != wire.StatusRejected || rep.Code != topology.CodeErased) {
			r.violate("deposit on the erased %s answered %s %s, want REJECTED %s", id, rep.Status, rep.Code, topology.CodeErased)
		}
	}
}

// keyring reads the run's keys topic.
func (r *run) keyring(ctx context.Context) (*shred.Keyring, error) {
	mk := masterKey()
	ring := shred.NewKeyring()
	recs, err := topologytest.ReadCommitted(ctx, r.brokers, "kcqrs-keys")
	if err != nil {
		return nil, fmt.Errorf("chaos: reading kcqrs-keys: %w", err)
	}
	created := map[string]int{}
	for _, rec := range recs {
		s := string(rec.Key)
		switch {
		case rec.Value == nil:
			ring.Forget(s)
		case shred.IsErasedMarker(rec.Value):
			ring.Delete(s)
		default:
			created[s]++
			k, err := shred.DecodeKeyRecord(mk, s, rec.Value)
			if err != nil {
				return nil, err
			}
			if err := ring.Put(s, k); err != nil {
				return nil, err
			}
		}
	}
	for s, n := range created {
		if n > 1 {
			r.violate("%s: %d key records committed, want one (a key is created once)", s, n)
		}
	}
	return ring, nil
}
