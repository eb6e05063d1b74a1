package shred

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/kcqrs/kcqrs/schemas"
)

// Fields seals and opens the personal fields of one Go struct type (found
// with schemas.Codec.PersonalGoFields). A nil *Fields has no personal field
// and does nothing.
type Fields struct {
	typ    reflect.Type // the struct type
	fields []schemas.PersonalField
	copies sync.Pool // of pointers to typ, for SealPtr
}

// NewFields returns the sealer of struct type t (or a pointer to it), nil
// when fields is empty.
func NewFields(t reflect.Type, fields []schemas.PersonalField) *Fields {
	if len(fields) == 0 {
		return nil
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	f := &Fields{typ: t, fields: fields}
	f.copies.New = func() any { return reflect.New(t).Interface() }
	return f
}

// Seal returns a copy of v (a struct of the type, or a pointer to one) with
// every personal field sealed for subject; v itself is not changed, since the
// caller keeps it as a domain value. The copy has v's form (pointer or not).
func (f *Fields) Seal(r *Keyring, subject string, v any) (any, error) {
	cp, isPtr, err := f.sealCopy(r, subject, v)
	if err != nil || !cp.IsValid() {
		return v, err
	}
	if isPtr {
		return cp.Interface(), nil
	}
	return cp.Elem().Interface(), nil
}

// SealPtr is Seal for an encoder that takes a struct or a pointer to one:
// it returns a pointer to the sealed copy, taken from a pool; the caller
// hands it back with Release once it has encoded it. It saves allocating
// and boxing a copy per call.
func (f *Fields) SealPtr(r *Keyring, subject string, v any) (any, error) {
	return f.SealPtrEntry(r, nil, subject, v)
}

// SealPtrEntry is SealPtr with e, subject's entry from r.Get (see
// Keyring.SealEntry; nil looks it up).
func (f *Fields) SealPtrEntry(r *Keyring, e *Entry, subject string, v any) (any, error) {
	if f == nil {
		return v, nil
	}
	dst := f.copies.Get() // a pointer to f.typ
	cp, _, err := f.sealInto(reflect.ValueOf(dst), r, e, subject, v)
	if err != nil || !cp.IsValid() {
		f.Release(dst) // cleared: it may hold a partly sealed copy
		return v, err
	}
	return dst, nil
}

// Release returns a value of SealPtr to the pool, cleared (a pooled copy
// holds no state, nor plaintext). Nothing for a nil f, or a value SealPtr
// passed through.
func (f *Fields) Release(sealed any) {
	if f == nil {
		return
	}
	rv := reflect.ValueOf(sealed)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Type().Elem() != f.typ {
		return
	}
	rv.Elem().SetZero()
	f.copies.Put(sealed)
}

// sealCopy returns a pointer to a sealed copy of v (invalid when there is
// nothing to seal: f nil or v a nil pointer) and whether v was a pointer.
func (f *Fields) sealCopy(r *Keyring, subject string, v any) (reflect.Value, bool, error) {
	if f == nil {
		return reflect.Value{}, false, nil
	}
	return f.sealInto(reflect.New(f.typ), r, nil, subject, v)
}

// sealInto is sealCopy into cp, a pointer to f's type.
func (f *Fields) sealInto(cp reflect.Value, r *Keyring, e *Entry, subject string, v any) (reflect.Value, bool, error) {
	rv := reflect.ValueOf(v)
	isPtr := rv.Kind() == reflect.Pointer
	if isPtr {
		if rv.IsNil() {
			return reflect.Value{}, true, nil
		}
		rv = rv.Elem()
	}
	if rv.Type() != f.typ {
		return reflect.Value{}, false, fmt.Errorf("shred: seal: %s is not %s", rv.Type(), f.typ)
	}
	cp.Elem().Set(rv)
	for _, pf := range f.fields {
		fv := cp.Elem().Field(pf.Index)
		if pf.Pointer {
			if fv.IsNil() {
				continue
			}
			s, err := r.SealEntry(e, subject, fv.Elem().String())
			if err != nil {
				return reflect.Value{}, false, err
			}
			p := reflect.New(fv.Type().Elem())
			p.Elem().SetString(s)
			fv.Set(p)
			continue
		}
		s, err := r.SealEntry(e, subject, fv.String())
		if err != nil {
			return reflect.Value{}, false, err
		}
		fv.SetString(s)
	}
	return cp, isPtr, nil
}

// Open opens every personal field of the struct ptr points to, in place. A
// field of an erased subject becomes Erased; erased reports whether any did.
// Any other failure is an error (and leaves *ptr partly opened: decode into
// a fresh value).
func (f *Fields) Open(r *Keyring, subject string, ptr reflect.Value) (erased bool, err error) {
	if f == nil {
		return false, nil
	}
	if ptr.Kind() != reflect.Pointer || ptr.Elem().Type() != f.typ {
		return false, fmt.Errorf("shred: open: %s is not a pointer to %s", ptr.Type(), f.typ)
	}
	sv := ptr.Elem()
	for _, pf := range f.fields {
		fv := sv.Field(pf.Index)
		if pf.Pointer {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		}
		pt, err := r.Open(subject, fv.String())
		if errors.Is(err, ErrErased) {
			erased = true
		} else if err != nil {
			return false, fmt.Errorf("shred: field %s of %q: %w", pf.Name, subject, err)
		}
		if pf.Pointer {
			p := reflect.New(fv.Type())
			p.Elem().SetString(pt)
			sv.Field(pf.Index).Set(p)
		} else {
			fv.SetString(pt)
		}
	}
	return erased, nil
}
