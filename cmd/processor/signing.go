package main

import (
	"crypto/sha256"
	"errors"

	"github.com/kcqrs/kcqrs/saga"
)

// signingKey sets the processor's restricted commands (the saga's legs,
// always: a worker without the saga still handles legs other workers' sagas
// send) and the key their signatures are checked with and the saga signs
// with.
//
// Without --transfer-signing-key: on a cluster that authenticates clients
// (SASL, or a TLS client certificate) a worker running the saga refuses to
// start, naming the flag: only a secret shared by the deployment proves a
// leg's origin there, and a random per-process key would break every leg
// sent by one worker's saga and handled by another worker. On a cluster that
// authenticates nobody, any client may write any topic, the events and the
// snapshots included, so a secret would protect nothing a client cannot
// bypass: a key derived from the group name (the same on every worker of
// the deployment) keeps the demo and the tests running, and run logs a
// warning that it is not a secret.
func signingKey(st *settings) error {
	st.cfg.InternalCommands = saga.InternalCommands()
	if st.signingKey != "" {
		st.cfg.CommandSigningKey = []byte(st.signingKey)
		return nil
	}
	if st.kafka.SASLMechanism != "" || st.kafka.TLSCertFile != "" {
		if st.transfers {
			return errors.New("--transfer-signing-key (or KCQRS_TRANSFER_SIGNING_KEY) is required with --transfers on a Kafka that authenticates clients (SASL or a TLS client certificate): the same secret on every worker")
		}
		return nil // every leg is refused (topology.CodeUnsignedCommand); run warns
	}
	sum := sha256.Sum256([]byte("kcqrs transfer legs on a cluster without authentication\x00" + st.cfg.Group))
	st.cfg.CommandSigningKey, st.derivedKey = sum[:], true
	return nil
}
