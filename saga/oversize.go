package saga

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/topology"
)

// maxLegBytes bounds a leg's record (key, value and headers): what the
// processor accepts as a command (topology.DefaultMaxCommandBytes), which
// is also below the producer's record limit. A leg repeats the debit's
// target (its key), transfer id and source (in its value, command id and
// correlation id), and the processor accepts debits and account ids whose
// legs exceed it: produced, such a leg failed every transaction of the saga
// (MESSAGE_TOO_LARGE, the batch retried unchanged) and stopped every
// transfer. It is not sent; its transfer stays pending (listed by kcqrs
// transfers) and the others go on.
const maxLegBytes = topology.DefaultMaxCommandBytes

// legBytes is the size of a leg's record as the producer counts it
// (uncompressed key, value and headers).
func legBytes(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}
