package history

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSortEntriesIsKeyOrder: the bucket sort gives Pebble's order (bytes
// of the keys) for small and large batches, ids sharing long prefixes,
// duplicate streams and extreme versions.
func TestSortEntriesIsKeyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 31, 32, 33, 100, 1000, 20000} {
		var e entries
		var tmp []entry
		for round := range 2 { // the second reuses the scratch space
			e.reset()
			for i := range n {
				id := fmt.Sprintf("acc-%d", rng.IntN(max(n/3, 1)))
				typ := []string{"account", "folder", "a"}[rng.IntN(3)]
				v := []int64{1, 2, 255, 256, 65535, 1 << 40, 1<<63 - 1}[rng.IntN(7)] + int64(rng.IntN(3)*round)
				e.add([]byte(typ), []byte(id), max(v, 1), rng.Int32N(64), int64(i)*int64(rng.IntN(1<<20)), rng.Int64())
			}
			want := make([][]byte, n)
			for i := range e.ents {
				want[i] = e.key(&e.ents[i])
			}
			slices.SortFunc(want, bytes.Compare)
			tmp = e.sortEntries(tmp)
			for i := range e.ents {
				if got := e.key(&e.ents[i]); !bytes.Equal(got, want[i]) {
					t.Fatalf("n=%d: entry %d is %x, want %x", n, i, got, want[i])
				}
			}
		}
	}
}

// TestVersionEncodingOrder: the compact version sorts as the number does.
func TestVersionEncodingOrder(t *testing.T) {
	vs := []uint64{0, 1, 2, 127, 128, 255, 256, 257, 65535, 65536, 1 << 32, 1<<63 - 1}
	for i := 1; i < len(vs); i++ {
		a, b := appendVersion(nil, vs[i-1]), appendVersion(nil, vs[i])
		if bytes.Compare(a, b) >= 0 || a[0] >= versionEnd || b[0] >= versionEnd {
			t.Fatalf("%d (%x) does not sort before %d (%x)", vs[i-1], a, vs[i], b)
		}
	}
}

// TestEntryRoundTrip: what add writes, Lookup and Dump read back, for
// every aggregate, in version order, with partition, offset and timestamp.
func TestEntryRoundTrip(t *testing.T) {
	idx, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	type agg struct{ typ, id string }
	want := map[agg][]Pointer{}
	var e entries
	for i := range 3000 {
		a := agg{[]string{"account", "folder"}[rng.IntN(2)], fmt.Sprintf("x-%d", rng.IntN(200))}
		if rng.IntN(50) == 0 {
			a.id = string([]byte{0, 0xff, byte(i)}) // any bytes
		}
		p := Pointer{Version: int64(len(want[a]) + 1), Partition: rng.Int32N(1 << 20), Offset: rng.Int64N(1 << 50), TimestampMillis: rng.Int64() - 1<<62}
		if len(want[a]) == 3 {
			p.Version = 300 // a jump over the byte boundary
		}
		want[a] = append(want[a], p)
		e.add([]byte(a.typ), []byte(a.id), p.Version, p.Partition, p.Offset, p.TimestampMillis)
	}
	if _, err := idx.apply(0, &e, 1); err != nil {
		t.Fatal(err)
	}
	n := 0
	for a, ps := range want {
		slices.SortFunc(ps, func(x, y Pointer) int { return int(x.Version - y.Version) })
		got, err := idx.Lookup(a.typ, a.id, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, ps) {
			t.Fatalf("%v: %+v, want %+v", a, got, ps)
		}
		if len(ps) > 2 {
			got, err := idx.Lookup(a.typ, a.id, 2, ps[len(ps)-2].Version)
			if err != nil || !slices.Equal(got, ps[1:len(ps)-1]) {
				t.Fatalf("%v 2..: %+v, %v, want %+v", a, got, err, ps[1:len(ps)-1])
			}
		}
		n += len(ps)
	}
	dumped := 0
	if err := idx.Dump(func(typ, id string, p Pointer) {
		ps := want[agg{typ, id}]
		if !slices.Contains(ps, p) {
			t.Fatalf("dumped %s %q %+v, not written", typ, id, p)
		}
		dumped++
	}); err != nil {
		t.Fatal(err)
	}
	if dumped != n {
		t.Fatalf("dumped %d of %d", dumped, n)
	}
}
