package projection

import "hash"

// Murmur2 returns a hash.Hash32 computing Kafka's default partitioner hash
// (the Java client's murmur2 with seed 0x9747b28c), masked to 31 bits. goka
// takes the hash modulo the partition count, so with this hasher it places a
// key on the same partition as franz-go's StickyKeyPartitioner, the Java
// client and the processor's routing check (topology.PartitionFor). goka's
// default, FNV-1a, would not.
func Murmur2() hash.Hash32 { return &murmur2{} }

type murmur2 struct{ buf []byte }

func (m *murmur2) Write(p []byte) (int, error) { m.buf = append(m.buf, p...); return len(p), nil }
func (m *murmur2) Reset()                      { m.buf = m.buf[:0] }
func (m *murmur2) Size() int                   { return 4 }
func (m *murmur2) BlockSize() int              { return 4 }

func (m *murmur2) Sum(b []byte) []byte {
	s := m.Sum32()
	return append(b, byte(s>>24), byte(s>>16), byte(s>>8), byte(s))
}

// Sum32 is murmur2(buf) & 0x7fffffff, as in Kafka's Utils.toPositive.
func (m *murmur2) Sum32() uint32 { return murmur2Sum(m.buf) & 0x7fffffff }

func murmur2Sum(data []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		mul  uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= mul
		k ^= k >> r
		k *= mul
		h *= mul
		h ^= k
	}
	tail := data[n&^3:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= mul
	}
	h ^= h >> 13
	h *= mul
	h ^= h >> 15
	return h
}

// murmur2String is Murmur2's Sum32 of s, without a hasher.
func murmur2String(s string) uint32 { return murmur2Sum([]byte(s)) & 0x7fffffff }
