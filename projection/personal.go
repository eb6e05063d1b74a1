package projection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/shred"
)

// Personal data (docs/erasure.md): the projector folds events as they are
// decoded without keys, so a field marked kcqrs.personal reaches its tables
// as the sealed text, and the tables hold only ciphertext of it. The query
// server opens it when ServerConfig.OpenPersonal is set (with keys followed
// from the keys topic, topology.FollowKeys); an erased subject's value then
// reads "[erased]".
//
// Sealed text has a fresh nonce per write, so an owners index keyed by it
// finds nothing. With Config.Personal the owners index is blind: keyed by
// an HMAC of the opened owner under a lookup key of the master key
// (shred.BlindIndex), which the query server computes the same way for a
// lookup. The HMAC must not outlive the subject's key: an erased account's
// index entry is dropped (sweepErased), and an entry of an erased subject
// that arrives later is dropped instead of stored (onOwner).

// Personal makes the owners index a blind index (see above).
type Personal struct {
	// Keys are the data keys, followed from the keys topic
	// (topology.FollowKeys) for as long as the projector runs: it opens an
	// owner with them to index it and learns erasures from them. Required.
	Keys *shred.Keyring
	// Owners names an owner in the index (shred.NewBlindIndex of the
	// master key, purpose OwnerIndexPurpose). Required.
	Owners *shred.BlindIndex
	// KeyWait bounds how long the fold of an account waits for its key to
	// reach Keys (it is written in the same transaction as the account's
	// first event, and followed within a fetch). Past it the event fails
	// and the group stops: the keys are not being followed. Default 30s.
	KeyWait time.Duration
}

// OwnerIndexPurpose is the blind index purpose of the owners index.
const OwnerIndexPurpose = "kcqrs.projection.owners"

func (ps *Personal) validate() error {
	if ps.Keys == nil || ps.Owners == nil {
		return errors.New("Personal needs Keys and Owners")
	}
	return nil
}

func accountSubject(id string) string { return AccountAggregate + "/" + id }

// ownerName is the owners-index name of a's owner: the owner itself
// without Personal, else its blind name. ok is false when a has no owner to
// index (none known, or its subject erased).
func (p *Projector) ownerName(a Account) (name string, ok bool, err error) {
	if a.Owner == "" {
		return "", false, nil
	}
	ps := p.cfg.Personal
	if ps == nil {
		return a.Owner, true, nil
	}
	subject := accountSubject(a.ID)
	if ps.Keys.Erased(subject) {
		// Also an owner stored in plain (written before the master key):
		// an erased subject gets no entry.
		return "", false, nil
	}
	wait := ps.KeyWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		pt, err := ps.Keys.Open(subject, a.Owner)
		switch {
		case err == nil:
			return ps.Owners.Sum(pt), true, nil
		case errors.Is(err, shred.ErrErased):
			return "", false, nil
		case errors.Is(err, shred.ErrNoKey) && time.Now().Before(deadline):
			time.Sleep(10 * time.Millisecond)
		default:
			return "", false, fmt.Errorf("projection: owner index of account %q: %w", a.ID, err)
		}
	}
}

// erasedEntry reports whether an owners-index entry belongs to an erased
// subject (always false without Personal).
func (p *Projector) erasedEntry(a Account) bool {
	return p.cfg.Personal != nil && p.cfg.Personal.Keys.Erased(accountSubject(a.ID))
}

// sweepErased drops the owners-index entries of erased accounts from the
// owners partitions this projector holds, whenever the keyring learns an
// erasure: each such entry is sent again to the owners group, which deletes
// it (onOwner), table topic included. A second sweep a little later catches
// an entry merged while the erasure was being learnt. Returns when ctx ends.
func (p *Projector) sweepErased(ctx context.Context, cl *kgo.Client) {
	ps := p.cfg.Personal
	var seen uint64
	var again <-chan time.Time
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			n := ps.Keys.Erasures()
			if n == seen {
				continue
			}
			seen = n
			again = time.After(2 * time.Second)
		case <-again:
			again = nil
		}
		if err := p.sweepOnce(ctx, cl); err != nil && ctx.Err() == nil {
			p.cfg.Logger.Error("owners index: dropping the entries of erased accounts failed (retried at the next erasure)", "err", err)
			again = time.After(5 * time.Second)
		}
	}
}

func (p *Projector) sweepOnce(ctx context.Context, cl *kgo.Client) error {
	table := TableOf(p.ownersGroup)
	var recs []*kgo.Record
	for _, st := range p.ownerStores.all(table) {
		it, err := st.store.Iterator()
		if err != nil {
			return err
		}
		for it.Next() {
			v, err := it.Value()
			if err != nil || len(v) == 0 {
				continue
			}
			a, err := decodeAccount(v)
			if err != nil || !p.erasedEntry(a) {
				continue
			}
			recs = append(recs, &kgo.Record{Topic: string(p.cfg.Names.ByOwnerTopic()), Partition: st.partition,
				Key: bytes.Clone(it.Key()), Value: bytes.Clone(v)})
		}
		err = it.Err()
		it.Release()
		if err != nil {
			return err
		}
	}
	if len(recs) == 0 {
		return nil
	}
	p.cfg.Logger.Info("owners index: dropping the entries of erased accounts", "entries", len(recs))
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

// openAccount returns a with its personal fields opened for the response.
func (s *Server) openAccount(a Account) Account {
	if s.cfg.OpenPersonal != nil {
		a.Owner = s.cfg.OpenPersonal("account", a.ID, a.Owner)
	}
	return a
}

// ownerLookup returns the accounts of owner in the active read models and
// the last account id it looked at (the next page starts after it): through
// the blind index with Projection.Personal (entries whose owner does not
// open to owner, such as those of a subject erased but not swept yet, are
// left out), else by the owner as stored.
func (s *Server) ownerLookup(rm *ReadModels, owner, after string, limit int) ([]Account, string, bool, error) {
	ps := s.cfg.Projection.Personal
	if ps == nil {
		accs, more, err := rm.Owner(owner, after, limit)
		last := ""
		if len(accs) > 0 {
			last = accs[len(accs)-1].ID
		}
		return accs, last, more, err
	}
	name := ps.Owners.Sum(owner)
	accs, more, err := rm.Owner(name, after, limit)
	if err != nil || len(accs) == 0 {
		return nil, "", more, err
	}
	last := accs[len(accs)-1].ID
	out := accs[:0]
	for _, a := range accs {
		subject := accountSubject(a.ID)
		if a.Owner == name {
			// The index entry itself: the accounts view has not got the
			// account yet.
			if ps.Keys.Erased(subject) {
				continue
			}
			a.Owner = owner
		} else if pt, err := ps.Keys.Open(subject, a.Owner); err != nil || pt != owner {
			continue
		}
		out = append(out, a)
	}
	return out, last, more, nil
}
