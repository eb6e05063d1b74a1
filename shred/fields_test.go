package shred

import (
	"reflect"
	"testing"

	"github.com/kcqrs/kcqrs/schemas"
)

// TestSealPtrPooledCopy: SealPtr seals a pooled copy (the value itself is
// not changed, whether given as a struct or a pointer), and Release clears
// the copy, so nothing of the state or its plaintext stays in the pool.
func TestSealPtrPooledCopy(t *testing.T) {
	f := NewFields(reflect.TypeOf(person{}), []schemas.PersonalField{{Name: "name", Index: 0}, {Name: "email", Index: 1, Pointer: true}})
	r := testRing(t, "s")
	email := "ada@example.org"
	in := person{Name: "Ada", Email: &email, N: 7}
	for _, v := range []any{in, &in} {
		out, err := f.SealPtr(r, "s", v)
		if err != nil {
			t.Fatal(err)
		}
		p, ok := out.(*person)
		if !ok || !IsSealed(p.Name) || !IsSealed(*p.Email) || p.N != 7 {
			t.Fatalf("SealPtr(%T) = %#v", v, out)
		}
		if in.Name != "Ada" || *in.Email != email {
			t.Fatal("SealPtr changed its input")
		}
		f.Release(out)
		if *p != (person{}) {
			t.Fatalf("a released copy still holds %+v", *p)
		}
	}
	var nilPerson *person
	if out, err := f.SealPtr(r, "s", nilPerson); err != nil || out != any(nilPerson) {
		t.Fatalf("SealPtr of a nil pointer = %v, %v", out, err)
	}
	f.Release(nilPerson) // passed through: nothing to release
	if _, err := f.SealPtr(r, "unknown", in); err == nil {
		t.Fatal("SealPtr without a key succeeded")
	}
}
