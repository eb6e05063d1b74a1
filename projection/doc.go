// Package projection is the query side of kcqrs: read models folded from the
// events topic by goka groups, queried over HTTP from goka views, and the
// tooling to reset and rebuild them.
//
// # Read models
//
// A Projector runs one version of three read models, each a goka group with
// a persisted table (a compacted <group>-table topic) stored locally in
// Pebble (PebbleStorage, goka's storage.Storage):
//
//   - accounts (<prefix>-accounts-v<N>): balance, status, owner, currency and
//     version by account id, folded from the events topic by FoldAccount;
//   - owners (<prefix>-owners-v<N>): an index, one entry (id and owner) per
//     (owner, account), key OwnerKey, sent through the intermediate topic
//     <accounts>-by-owner when an account's owner becomes known; an owner's
//     accounts are a prefix scan of the view (OwnerPrefix), their entries
//     read from the accounts view; with Config.Personal the owner in key and
//     entry is its blind name, an HMAC (personal.go);
//   - totals (<prefix>-totals-v<N>): fixed-size counters of money per
//     currency and accounts-table partition (CurrencyTotal, key TotalKey),
//     kept by the accounts group (totals.go) and sent whole through
//     <accounts>-by-currency.
//
// Every entry's size is independent of the number of accounts: a whole
// entry is written per update, and one past ~1 MB stops the group.
//
// The accounts group does not write through goka's SetValue and Emit (one
// store write, one produce and one offset write per record): its handler
// folds an event into a pending batch and defers the event's commit, and a
// writer (writer.go) writes each batch's last entry per account to the store
// in one Pebble batch, produces them with the owner-index records and one
// counters record per currency and partition through a franz-go client, and
// commits the batch's events once everything is acknowledged.
//
// goka is at-least-once: after a crash, records since the last commit come
// again. Every read model is therefore idempotent by aggregate version: an
// event at or below the version an entry holds changes nothing (and re-emits
// the held entry to the table and downstream: the store is written before
// those produces, so a failed one is repaired by the redelivery), the owner
// entries keep their account's version, and counter updates carry the
// events offset they follow. A version
// gap is folded (account events carry the resulting balance) but reported:
// logged, counted (Stats.Gaps, Account.Gaps) and copied to the dead-letter
// topic. Events a group cannot handle (undecodable, an unknown event type, a
// handler panic) go to the group's dead-letter topic <group>-dlq with the
// error in the kcqrs_dlq_* headers; the group goes on. Events of other
// aggregate types pass by.
//
// goka's hasher is set to Kafka's murmur2 (Murmur2), its sarama protocol
// version to 2.3.0 (newer OffsetFetch versions fail against kfake), its
// consumers to read_committed, and created topics to replication 1 by
// default.
//
// # Queries
//
// Server answers from goka views (ReadModels) of one or more versions; see
// Server.Handler for the routes. GET /v1/accounts/{id}?min_version=N&wait=2s
// waits until the entry reaches version N, so a client that got a reply
// with version N reads its own write, and answers 408 with the current
// version when it does not in time.
//
// # Replay and rebuild
//
// PlanReset and ExecuteReset move a version's accounts group on the events
// topic (earliest, latest, a timestamp or an offset), drop its downstream
// groups' offsets, delete its tables and intermediate topics and remove the
// local stores, refusing while any of its groups has live members or a
// projector or query server of the version is registered in the registry
// topic (registry.go), under a reset lock that makes starters wait. A new
// version runs beside the live one under new names; CaughtUp (with
// PendingData, which looks past the commit markers goka never commits over)
// tells when it has read everything, and a Server given both versions
// switches its queries over then.
package projection
