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
// key per account is created in the transaction of its first event. Its
// pair is the same processor without a master key, measured right after it
// on topics of its own (plain): the later contender of a pair runs on a warmer
// process, so the order favours plain and the ratio errs low, never high.
func measurePersonal(ctx context.Context, o *Options, w *workload, prod *kgo.Client, rp string) (personal, plain float64, err error) {
	mk, err := shred.NewMasterKey(bytes.Repeat([]byte{0x5a}, shred.KeyLen))
	if err != nil {
		return 0, 0, err
	}
	one := func(name string, mutate func(*topology.Config)) (float64, error) {
		topics := topicsFor(o.Prefix + rp + name + "-")
		topics.Keys = o.Prefix + rp + name + "-keys"
		proc, err := startProcessor(o, topics, o.Prefix+rp+name+"-processor", "bench-0", filepath.Join(o.WorkDir, rp+name), mutate)
		if err != nil {
			return 0, err
		}
		v, err := w.throughput(ctx, prod, topics.Commands, name, o.Commands, o.Timeout, proc.processed)
		if serr := proc.stop(); err == nil && serr != nil {
			err = serr
		}
		if err != nil {
			return 0, fmt.Errorf("processor (%s): %w", name, err)
		}
		return v, nil
	}
	if personal, err = one("pers", func(c *topology.Config) { c.Personal = mk }); err != nil {
		return 0, 0, err
	}
	if plain, err = one("plain", func(c *topology.Config) { c.Topics.Keys = "" }); err != nil {
		return 0, 0, err
	}
	return personal, plain, nil
}
