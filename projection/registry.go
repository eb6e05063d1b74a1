package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The registry is a compacted one-partition topic, <prefix>-registry, where
// every projector and query server of a prefix announces itself with a
// heartbeat, and where a reset takes its lock. goka's views are not group
// members, so without it a reset cannot see query servers.
//
// Lock and registration are ordered by the topic itself: a starter writes
// its heartbeat, then reads the registry to the end; a reset writes its lock,
// then reads to the end. Whichever record comes second in the log sees the
// other: the starter waits for the lock to go, or the reset sees the starter
// and gives up.

// RegistryTopic is the registry topic of a name prefix.
func RegistryTopic(prefix string) string {
	return Names{Prefix: prefix}.withDefaults().Prefix + "-registry"
}

// Registration kinds.
const (
	KindProjector = "projector"
	KindView      = "view"
	KindResetLock = "reset-lock"
)

// Registration is one registry record: a live projector or query server of
// a version, or the lock of a reset of that version.
type Registration struct {
	Kind     string `json:"kind"`
	Version  int    `json:"version"`
	Instance string `json:"instance"`
	// ExpiresMillis is when the record stops counting if it is not renewed
	// (a process that died without removing it).
	ExpiresMillis int64 `json:"expiresMillis"`
}

func (r Registration) key() string {
	return r.Kind + "/" + strconv.Itoa(r.Version) + "/" + r.Instance
}

// live reports whether the record still counts at now.
func (r Registration) live(now time.Time) bool { return r.ExpiresMillis > now.UnixMilli() }

// HeartbeatTTL is how long a registration counts without renewal; it is
// renewed every HeartbeatTTL/3. A process killed without cleanup blocks a
// reset of its version for at most this long.
const HeartbeatTTL = 15 * time.Second

// LiveInstanceError refuses a reset while a projector or query server of
// the version is registered, or another reset holds the lock.
type LiveInstanceError struct{ Registration Registration }

func (e *LiveInstanceError) Error() string {
	r := e.Registration
	what := "a " + r.Kind
	if r.Kind == KindResetLock {
		what = "another reset"
	}
	return fmt.Sprintf("projection: %s of version %d is running (instance %s, registration expires in %s unless renewed): stop it first",
		what, r.Version, r.Instance, time.Until(time.UnixMilli(r.ExpiresMillis)).Round(time.Second))
}

var instanceSeq atomic.Int64

func newInstanceID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%d-%d", host, os.Getpid(), time.Now().UnixNano()%1e9, instanceSeq.Add(1))
}

// ensureRegistry creates the registry topic if it is missing.
func ensureRegistry(ctx context.Context, cl *kgo.Client, topic string) error {
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": ptr("compact")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("projection: create registry %s: %w", topic, err)
	}
	return nil
}

// writeRegistration writes r (or its tombstone) and waits for the ack.
func writeRegistration(ctx context.Context, cl *kgo.Client, topic string, r Registration, remove bool) error {
	rec := &kgo.Record{Topic: topic, Partition: 0, Key: []byte(r.key())}
	if !remove {
		rec.Value, _ = json.Marshal(r)
	}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("projection: registry %s: %w", topic, err)
	}
	return nil
}

// ReadRegistry reads the registry of a prefix to its end: the latest record
// of every key (removed ones left out), live or expired.
// opts are the client options (seed brokers, TLS, SASL).
func ReadRegistry(ctx context.Context, opts []kgo.Opt, prefix string) ([]Registration, error) {
	topic := RegistryTopic(prefix)
	rd, err := kgo.NewClient(append(append([]kgo.Opt(nil), opts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		return nil, fmt.Errorf("projection: registry %s: %w", topic, err)
	}
	defer rd.Close()
	ends, err := kadm.NewClient(rd).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("projection: registry %s: %w", topic, err)
	}
	end, _ := ends.Lookup(topic, 0)
	if end.Offset <= 0 {
		return nil, nil
	}
	byKey := map[string]*Registration{}
	var order []string
	for {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("projection: reading registry %s: %w", topic, err)
		}
		if err := fs.Err0(); err != nil {
			return nil, fmt.Errorf("projection: reading registry %s: %w", topic, err)
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			k := string(r.Key)
			if _, ok := byKey[k]; !ok {
				order = append(order, k)
			}
			byKey[k] = nil
			if r.Value != nil {
				var reg Registration
				if json.Unmarshal(r.Value, &reg) == nil {
					byKey[k] = &reg
				}
			}
			done = done || r.Offset >= end.Offset-1
		})
		if done {
			break
		}
	}
	var out []Registration
	for _, k := range order {
		if r := byKey[k]; r != nil {
			out = append(out, *r)
		}
	}
	return out, nil
}

// liveOther returns the first live record of version (other than self's
// key) whose kind is one of kinds.
func liveOther(regs []Registration, version int, self string, kinds ...string) (Registration, bool) {
	now := time.Now()
	for _, r := range regs {
		if r.Version != version || r.key() == self || !r.live(now) {
			continue
		}
		for _, k := range kinds {
			if r.Kind == k {
				return r, true
			}
		}
	}
	return Registration{}, false
}

// registration is a running process's entry in the registry.
type registration struct {
	cl    *kgo.Client
	topic string
	reg   Registration
	done  chan struct{}
}

// register announces a projector or query server of cfg's version. While a
// reset of that version holds the lock, it withdraws, waits (calling
// waiting(true)) and tries again. Then it renews the entry until ctx ends,
// and removes it.
func register(ctx context.Context, cfg Config, kind string, waiting func(bool)) (*registration, error) {
	cl, err := kgo.NewClient(cfg.kgoOpts()...)
	if err != nil {
		return nil, fmt.Errorf("projection: registry: %w", err)
	}
	r := &registration{cl: cl, topic: RegistryTopic(cfg.Names.Prefix), done: make(chan struct{}),
		reg: Registration{Kind: kind, Version: cfg.Names.Version, Instance: newInstanceID()}}
	fail := func(err error) (*registration, error) { cl.Close(); return nil, err }
	if err := ensureRegistry(ctx, cl, r.topic); err != nil {
		return fail(err)
	}
	for {
		r.reg.ExpiresMillis = time.Now().Add(HeartbeatTTL).UnixMilli()
		if err := writeRegistration(ctx, cl, r.topic, r.reg, false); err != nil {
			return fail(err)
		}
		regs, err := ReadRegistry(ctx, cfg.kgoOpts(), cfg.Names.Prefix)
		if err != nil {
			return fail(err)
		}
		lock, locked := liveOther(regs, r.reg.Version, r.reg.key(), KindResetLock)
		if !locked {
			break
		}
		if waiting != nil {
			waiting(true)
		}
		cfg.Logger.Warn("a reset of this version is running: waiting", "kind", kind, "version", r.reg.Version, "reset", lock.Instance)
		_ = writeRegistration(ctx, cl, r.topic, r.reg, true)
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	if waiting != nil {
		waiting(false)
	}
	go r.renew(ctx, cfg)
	return r, nil
}

func (r *registration) renew(ctx context.Context, cfg Config) {
	defer close(r.done)
	defer r.cl.Close()
	t := time.NewTicker(HeartbeatTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := writeRegistration(wctx, r.cl, r.topic, r.reg, true); err != nil {
				cfg.Logger.Warn("could not remove the registration", "err", err)
			}
			return
		case <-t.C:
		}
		r.reg.ExpiresMillis = time.Now().Add(HeartbeatTTL).UnixMilli()
		if err := writeRegistration(ctx, r.cl, r.topic, r.reg, false); err != nil && ctx.Err() == nil {
			cfg.Logger.Warn("could not renew the registration", "err", err)
		}
	}
}

// wait waits until the registration is removed (after its ctx ended).
func (r *registration) wait() { <-r.done }

// ResetLock is a reset's lock on one version of the read models.
type ResetLock struct {
	cl    *kgo.Client
	topic string
	reg   Registration
}

// LockForReset takes the reset lock of cfg's version: it writes the lock,
// then refuses (with a *LiveInstanceError, the lock removed again) if a
// projector or query server of the version, or another reset, is
// registered. Hold it while the reset acts; Release it afterwards. A lock
// not released (a crashed reset) expires after ttl.
func LockForReset(ctx context.Context, cfg Config, ttl time.Duration) (*ResetLock, error) {
	cfg.setDefaults()
	cl, err := kgo.NewClient(cfg.kgoOpts()...)
	if err != nil {
		return nil, fmt.Errorf("projection: reset lock: %w", err)
	}
	l := &ResetLock{cl: cl, topic: RegistryTopic(cfg.Names.Prefix),
		reg: Registration{Kind: KindResetLock, Version: cfg.Names.Version, Instance: newInstanceID(),
			ExpiresMillis: time.Now().Add(ttl).UnixMilli()}}
	if err := ensureRegistry(ctx, cl, l.topic); err != nil {
		cl.Close()
		return nil, err
	}
	if err := writeRegistration(ctx, cl, l.topic, l.reg, false); err != nil {
		cl.Close()
		return nil, err
	}
	regs, err := ReadRegistry(ctx, cfg.kgoOpts(), cfg.Names.Prefix)
	if err == nil {
		if other, ok := liveOther(regs, l.reg.Version, l.reg.key(), KindProjector, KindView, KindResetLock); ok {
			err = &LiveInstanceError{Registration: other}
		}
	}
	if err != nil {
		_ = l.Release(ctx)
		return nil, err
	}
	return l, nil
}

// Release removes the lock.
func (l *ResetLock) Release(ctx context.Context) error {
	defer l.cl.Close()
	return writeRegistration(ctx, l.cl, l.topic, l.reg, true)
}

// CheckNoInstances returns a *LiveInstanceError for the first projector,
// query server or reset of cfg's version that is registered (what a reset
// would be refused for); it takes no lock.
func CheckNoInstances(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	regs, err := ReadRegistry(ctx, cfg.kgoOpts(), cfg.Names.Prefix)
	if err != nil {
		return err
	}
	if r, ok := liveOther(regs, cfg.Names.Version, "", KindProjector, KindView, KindResetLock); ok {
		return &LiveInstanceError{Registration: r}
	}
	return nil
}
