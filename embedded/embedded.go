package embedded

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Options configures an embedded broker. Zero values are for tests: a free
// port and memory-only storage.
type Options struct {
	// Port to listen on (127.0.0.1 only). 0 picks a free port.
	Port int
	// DataDir persists the broker's logs, offsets and transactions so a
	// restarted broker keeps them. "" keeps everything in memory.
	DataDir string
	// CompactionIntervalMs is how often compacted topics are cleaned, in
	// milliseconds. Default 30000 (kfake's own default is one hour).
	CompactionIntervalMs int
	// Extra are further kfake options (TLS, SASL, ACLs, ...). Faults are
	// installed on the returned cluster with Cluster.Fault.
	Extra []kfake.Opt
}

// Start starts a one-node cluster.
func Start(o Options) (*kfake.Cluster, error) {
	if o.CompactionIntervalMs == 0 {
		o.CompactionIntervalMs = 30000
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.BrokerConfigs(map[string]string{
			"log.cleaner.backoff.ms": fmt.Sprint(o.CompactionIntervalMs),
		}),
	}
	if o.Port != 0 {
		opts = append(opts, kfake.Ports(o.Port))
	}
	if o.DataDir != "" {
		opts = append(opts, kfake.DataDir(o.DataDir))
	}
	opts = append(opts, o.Extra...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded: start broker: %w", err)
	}
	return c, nil
}
