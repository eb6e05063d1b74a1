package projection

import (
	"fmt"
	"testing"

	"github.com/kcqrs/kcqrs/topology"
)

// TestMurmur2MatchesKafkaPartitioner checks goka's placement (hash modulo
// partitions, see goka's View.hash) against the processor's routing, which is
// franz-go's Kafka-compatible murmur2 partitioner.
func TestMurmur2MatchesKafkaPartitioner(t *testing.T) {
	for _, n := range []int32{1, 3, 4, 8, 13} {
		for i := 0; i < 2000; i++ {
			key := []byte(fmt.Sprintf("acc-%d-%s", i, string(rune('a'+i%26))))
			if i%97 == 0 {
				key = key[:i%len(key)]
			}
			h := Murmur2()
			h.Write(key)
			got := int32(h.Sum32()) % n
			if want := topology.PartitionFor(key, n); got != want {
				t.Fatalf("key %q over %d partitions: goka hasher gives %d, Kafka partitioner %d", key, n, got, want)
			}
		}
	}
}

// Reference values of the Java client's Utils.murmur2 (from its unit tests).
func TestMurmur2JavaVectors(t *testing.T) {
	for in, want := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		if got := int32(murmur2Sum([]byte(in))); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
}
