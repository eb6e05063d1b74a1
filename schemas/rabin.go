package schemas

// CRC-64-AVRO, the Rabin fingerprint of the Avro specification ("Schema
// Fingerprints"). goavro has the same function but keeps it private.

const rabinEmpty uint64 = 0xc15d213aa4d7a795

var rabinTable = func() (t [256]uint64) {
	for i := range t {
		fp := uint64(i)
		for range 8 {
			fp = (fp >> 1) ^ (rabinEmpty & -(fp & 1))
		}
		t[i] = fp
	}
	return t
}()

func rabin(buf []byte) uint64 {
	fp := rabinEmpty
	for _, b := range buf {
		fp = (fp >> 8) ^ rabinTable[byte(fp)^b]
	}
	return fp
}
