package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/shred"
	"github.com/kcqrs/kcqrs/topology"
)

// personalPairs is how many pairs (personal, plain) a round measures, in
// alternating order.
const personalPairs = 2

// measurePersonal is the processor's throughput with personal data on (a
// master key set): the workload's OpenAccount owner, marked kcqrs.personal,
// is sealed in its event and in every snapshot of the account, and a data
// key per account is created in the transaction of its first event. Its
// pair is the same processor without a master key, on topics of its own
// (plain). A round measures personalPairs pairs in alternating order
// (personal first, then plain first): the later contender of a pair runs
// on a warmer process, so one order alone biases the ratio; alternating
// cancels that bias, and the median of the pairs' ratios drops a pair that
// a neighbour on the machine disturbed. It returns the medians of the two
// throughputs and each pair's ratio.
func measurePersonal(ctx context.Context, o *Options, w *workload, prod *kgo.Client, rp string, logf func(string, ...any)) (personal, plain float64, ratios []float64, err error) {
	mk, err := shred.NewMasterKey(bytes.Repeat([]byte{0x5a}, shred.KeyLen))
	if err != nil {
		return 0, 0, nil, err
	}
	one := func(name string, mutate func(*topology.Config)) (float64, error) {
		topics := topicsFor(o.Prefix + rp + name + "-")
		topics.Keys = o.Prefix + rp + name + "-keys"
		proc, err := startProcessor(o, topics, o.Prefix+rp+name+"-processor", "bench-0", filepath.Join(o.WorkDir, rp+name), mutate)
		if err != nil {
			return 0, err
		}
		processed := proc.processed
		var prof *os.File
		if o.PersonalCPUProfile != "" {
			// Profile only the timed part: start once the warm-up is through.
			processed = func() (int64, error) {
				n, err := proc.processed()
				if prof == nil && n >= int64(w.accounts) {
					if prof, err = os.Create(o.PersonalCPUProfile + name + ".pprof"); err != nil {
						return n, err
					}
					if err := pprof.StartCPUProfile(prof); err != nil {
						return n, err
					}
				}
				return n, err
			}
		}
		v, cpu, err := w.throughputCPU(ctx, prod, topics.Commands, name, o.Commands, o.Timeout, processed)
		if prof != nil {
			pprof.StopCPUProfile()
			_ = prof.Close()
		}
		if err == nil {
			logf("personal data contender %s: %.0f commands/s, %.1f µs CPU per command", name, v, us(cpu))
		}
		if serr := proc.stop(); err == nil && serr != nil {
			err = serr
		}
		if err != nil {
			return 0, fmt.Errorf("processor (%s): %w", name, err)
		}
		return v, nil
	}
	var pers, plains []float64
	pairs := personalPairs
	if o.PersonalPairs > 0 {
		pairs = o.PersonalPairs
	}
	for i := range pairs {
		runPers := func() (float64, error) {
			return one(fmt.Sprintf("pers%d", i), func(c *topology.Config) { c.Personal = mk })
		}
		runPlain := func() (float64, error) {
			return one(fmt.Sprintf("plain%d", i), func(c *topology.Config) { c.Topics.Keys = "" })
		}
		var p, q float64
		if i%2 == 0 {
			if p, err = runPers(); err == nil {
				q, err = runPlain()
			}
		} else {
			if q, err = runPlain(); err == nil {
				p, err = runPers()
			}
		}
		if err != nil {
			return 0, 0, nil, err
		}
		logf("personal data pair %d (%s first): %.0f vs %.0f commands/s (%.2fx)", i, map[bool]string{true: "personal", false: "plain"}[i%2 == 0], p, q, p/q)
		pers, plains, ratios = append(pers, p), append(plains, q), append(ratios, p/q)
	}
	return medianOf(pers), medianOf(plains), ratios, nil
}

// medianOf is the median of v (0 when empty).
func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// personalRows adds the personal-data rows to the table: the throughputs
// (medians over the rounds of each round's median), and the ratio as the
// median of every alternated pair's own ratio, all rounds together (each
// round's pair ratios in brackets).
func (r *Results) personalRows(row func(cells ...string), perRound func(func(roundResult) float64) string) {
	pers := func(rd roundResult) float64 { return rd.Personal }
	plain := func(rd roundResult) float64 { return rd.PersonalPlain }
	var all []float64
	var rounds []string
	for _, rd := range r.Rounds {
		all = append(all, rd.PersonalRatios...)
		var v []string
		for _, x := range rd.PersonalRatios {
			v = append(v, fmt.Sprintf("%.2f", x))
		}
		rounds = append(rounds, strings.Join(v, " "))
	}
	row("processor throughput with personal data (owner sealed, a data key per account)", fmt.Sprintf("%.0f cmds/s [%s]", median(r.Rounds, pers), perRound(pers)), "", "")
	row("its pair: the same processor without a master key", fmt.Sprintf("%.0f cmds/s [%s]", median(r.Rounds, plain), perRound(plain)), "", "")
	row(fmt.Sprintf("personal data ratio (with / without): median of %d alternated pairs", len(all)), "",
		fmt.Sprintf("%.2f [%s]", medianOf(all), strings.Join(rounds, "; ")), ">= 0.9")
}
