package topology

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/wire"
)

// Signed commands: proof of origin for the commands only a trusted sender
// may send (Config.InternalCommands: the transfer saga's legs). The command
// topic is public; a credit leg names a debit that its target cannot check,
// so without a signature any client could credit any account from nothing.
// The processor checks the signature before the dedupe window is read: a
// forged command is never remembered, so a forger who sends a leg with the
// saga's (deterministic) command id first cannot make the real leg a
// "duplicate".

// CodeUnsignedCommand (INVALID): the command type is restricted to a trusted
// sender (a transfer leg, sent by the saga) and kcqrs_signature is missing or
// not a valid HMAC-SHA256, with the deployment's signing key, of this
// command's id, aggregate type, key, command type and value; it had no effect
// and is dead-lettered.
const CodeUnsignedCommand = "unsigned_command"

// SignCommand returns the kcqrs_signature header value of a command: the
// lowercase hex HMAC-SHA256, keyed with key, of the command id, aggregate
// type, aggregate id (the record key), command type and value, each
// length-prefixed so that no two different commands sign the same bytes.
func SignCommand(key []byte, commandID, aggregateType, aggregateID, commandType string, value []byte) []byte {
	mac := hmac.New(sha256.New, key)
	writeSigned(mac, []byte(commandID))
	writeSigned(mac, []byte(aggregateType))
	writeSigned(mac, []byte(aggregateID))
	writeSigned(mac, []byte(commandType))
	writeSigned(mac, value)
	sum := mac.Sum(nil)
	out := make([]byte, hex.EncodedLen(len(sum)))
	hex.Encode(out, sum)
	return out
}

func writeSigned(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// restricted reports whether only a trusted sender may send the command.
func (c *Config) restricted(aggregateType, commandType string) bool {
	for _, t := range c.InternalCommands[aggregateType] {
		if t == commandType {
			return true
		}
	}
	return false
}

// checkSignature refuses a restricted command whose signature is missing or
// wrong (compared in constant time). Without a signing key nothing restricted
// is accepted: no one can prove the origin.
func (p *Processor) checkSignature(r *kgo.Record, meta *commandMeta, commandType string) error {
	if !p.cfg.restricted(meta.aggregateType, commandType) && !p.cfg.restricted(meta.aggregateType, meta.commandType) {
		return nil
	}
	if len(p.cfg.CommandSigningKey) == 0 {
		return invalid(CodeUnsignedCommand, "%s of %s may only be sent by the transfer saga, and this processor has no signing key to check it (CommandSigningKey)", meta.commandType, meta.aggregateType)
	}
	var got []byte
	n := 0
	for _, h := range r.Headers {
		if h.Key == wire.HeaderSignature {
			got, n = h.Value, n+1
		}
	}
	switch {
	case n == 0:
		return invalid(CodeUnsignedCommand, "%s of %s may only be sent by the transfer saga: no %s header", meta.commandType, meta.aggregateType, wire.HeaderSignature)
	case n > 1:
		return invalid(CodeUnsignedCommand, "%s of %s: %d %s headers, want one", meta.commandType, meta.aggregateType, n, wire.HeaderSignature)
	}
	want := SignCommand(p.cfg.CommandSigningKey, meta.commandID, meta.aggregateType, meta.aggregateID, meta.commandType, r.Value)
	if !hmac.Equal(got, want) {
		return invalid(CodeUnsignedCommand, "%s of %s may only be sent by the transfer saga: %s does not match this command", meta.commandType, meta.aggregateType, wire.HeaderSignature)
	}
	return nil
}
