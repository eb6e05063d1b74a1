package bench

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
)

// measurePersonal is the processor's throughput with personal data on (a
// master key set): the workload's OpenAccount owner, marked kcqrs.personal,
// is sealed in its event and in every snapshot of the account, and a data
// key per account is created in the transaction of its first event. The
// same workload as the plain processor, on topics of its own, right after it.
func measurePersonal(ctx context.Context, o *Options, w *workload, prod *kgo.Client, rp string) (float64, error) {
	mk, err := shred.NewMasterKey(bytes.Repeat([]byte{0x5a}, shred.KeyLen))
	if err != nil {
		return 0, err
	}
	topics := topicsFor(o.Prefix + rp + "pers-")
	topics.Keys = o.Prefix + rp + "pers-keys"
	proc, err := startProcessor(o, topics, o.Prefix+rp+"pers-processor", "bench-0", filepath.Join(o.WorkDir, rp+"pers"),
		func(c *topology.Config) { c.Personal = mk })
	if err != nil {
		return 0, err
	}
	v, err := w.throughput(ctx, prod, topics.Commands, "pers", o.Commands, o.Timeout, proc.processed)
	if serr := proc.stop(); err == nil && serr != nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("processor with personal data: %w", err)
	}
	return v, nil
}
