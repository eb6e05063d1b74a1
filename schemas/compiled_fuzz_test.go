package schemas

import (
	"math/rand/v2"
	"testing"
)

// FuzzCompiledDecode decodes arbitrary bytes, behind the header of each
// compiled record type, on the compiled path and on the goavro path: it must
// never panic, both must fail or both give the same value (a failed Decode
// leaving the target as it was), and whatever decodes re-encodes on the
// compiled path to goavro's bytes for that value (checkDecodersAgree).
func FuzzCompiledDecode(f *testing.F) {
	targets := compiledTargets(f)
	r := rand.New(rand.NewPCG(1, 15))
	for _, tg := range targets {
		for range 2 {
			v := randomRecord(r, tg.c.schema, tg.typ)
			if data, err := tg.c.Encode(v.Interface()); err == nil {
				f.Add(data[HeaderLen:])
				f.Add(data[HeaderLen : HeaderLen+(len(data)-HeaderLen)/2])
			}
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F})

	f.Fuzz(func(t *testing.T, body []byte) {
		for _, tg := range targets {
			data := append(tg.c.header[:HeaderLen:HeaderLen], body...)
			checkDecodersAgree(t, tg.c, tg.typ, data)
		}
	})
}
