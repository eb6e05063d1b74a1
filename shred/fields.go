package shred

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/kcqrs/kcqrs/schemas"
)

// Fields seals and opens the personal fields of one Go struct type (found
// with schemas.Codec.PersonalGoFields). A nil *Fields has no personal field
// and does nothing.
type Fields struct {
	typ    reflect.Type // the struct type
	fields []schemas.PersonalField
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
	return &Fields{typ: t, fields: fields}
}

// Seal returns a copy of v (a struct of the type, or a pointer to one) with
// every personal field sealed for subject; v itself is not changed, since the
// caller keeps it as a domain value. The copy has v's form (pointer or not).
func (f *Fields) Seal(r *Keyring, subject string, v any) (any, error) {
	if f == nil {
		return v, nil
	}
	rv := reflect.ValueOf(v)
	isPtr := rv.Kind() == reflect.Pointer
	if isPtr {
		if rv.IsNil() {
			return v, nil
		}
		rv = rv.Elem()
	}
	if rv.Type() != f.typ {
		return nil, fmt.Errorf("shred: seal: %s is not %s", rv.Type(), f.typ)
	}
	cp := reflect.New(f.typ)
	cp.Elem().Set(rv)
	for _, pf := range f.fields {
		fv := cp.Elem().Field(pf.Index)
		if pf.Pointer {
			if fv.IsNil() {
				continue
			}
			s, err := r.Seal(subject, fv.Elem().String())
			if err != nil {
				return nil, err
			}
			p := reflect.New(fv.Type().Elem())
			p.Elem().SetString(s)
			fv.Set(p)
			continue
		}
		s, err := r.Seal(subject, fv.String())
		if err != nil {
			return nil, err
		}
		fv.SetString(s)
	}
	if isPtr {
		return cp.Interface(), nil
	}
	return cp.Elem().Interface(), nil
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
