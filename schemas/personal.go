package schemas

import (
	"fmt"
	"reflect"
)

// PersonalProperty is the field property that marks a field as personal
// data: {"name": "owner", "type": "string", "kcqrs.personal": true}. The
// runtime stores a marked field encrypted with its data subject's key
// (package shred), so destroying the key erases the value everywhere it was
// written. The property is not part of the Parsing Canonical Form: marking
// or unmarking a field changes neither the fingerprint nor the binary form.
//
// Only top-level fields of a record whose type is "string" or
// ["null", "string"] can be marked: the encrypted form is text inside the
// same Avro string (shred's envelope), so the schema, and every reader of
// it, stay as they are. A mark anywhere else is refused when the schema is
// loaded, never silently ignored.
const PersonalProperty = "kcqrs.personal"

func personalProp(fm map[string]any) (bool, error) {
	v, ok := fm[PersonalProperty]
	if !ok {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%q must be true or false, got %v", PersonalProperty, v)
	}
	return b, nil
}

// checkPersonal refuses a personal mark on a field that cannot carry the
// encrypted form: a top-level field of another type, or any nested field.
func checkPersonal(top *avroType) error {
	for _, f := range top.fields {
		if f.personal && !personalType(f.typ) {
			return fmt.Errorf("field %q is marked %q but is a %s (only string and [\"null\", \"string\"] fields can be)", f.name, PersonalProperty, f.typ.describe())
		}
		if err := checkNestedPersonal(f.typ, top.name+"."+f.name, map[*avroType]bool{top: true}); err != nil {
			return err
		}
	}
	return nil
}

func checkNestedPersonal(t *avroType, path string, seen map[*avroType]bool) error {
	if t == nil || seen[t] {
		return nil
	}
	seen[t] = true
	switch t.kind {
	case kindRecord:
		for _, f := range t.fields {
			if f.personal {
				return fmt.Errorf("field %s.%s is marked %q inside a nested record (only top-level fields can be)", path, f.name, PersonalProperty)
			}
			if err := checkNestedPersonal(f.typ, path+"."+f.name, seen); err != nil {
				return err
			}
		}
	case kindArray:
		return checkNestedPersonal(t.items, path+"[]", seen)
	case kindMap:
		return checkNestedPersonal(t.values, path+"{}", seen)
	case kindUnion:
		for _, b := range t.branches {
			if err := checkNestedPersonal(b, path, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

func personalType(t *avroType) bool {
	if t.kind == kindString {
		return true
	}
	return t.kind == kindUnion && len(t.branches) == 2 && t.branches[0].kind == kindNull && t.branches[1].kind == kindString
}

// PersonalFields returns the names of the record's fields marked personal
// (PersonalProperty), in schema order; nil when there are none.
func (c *Codec) PersonalFields() []string {
	var out []string
	for _, f := range c.schema.fields {
		if f.personal {
			out = append(out, f.name)
		}
	}
	return out
}

// PersonalField is a marked field of a Go struct type: the Avro field's
// name and the index of the Go field it maps to (a string kind, or a
// pointer to one for ["null", "string"]).
type PersonalField struct {
	Name    string
	Index   int
	Pointer bool
}

// PersonalGoFields maps the record's personal fields onto Go struct type t
// (or a pointer to it) by the same rules as Encode and Decode. It returns
// nil when the record has no personal field.
func (c *Codec) PersonalGoFields(t reflect.Type) ([]PersonalField, error) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	names := c.PersonalFields()
	if len(names) == 0 {
		return nil, nil
	}
	if err := c.Bind(t); err != nil {
		return nil, err
	}
	b := &convBuilder{root: c.name + " ↔ " + t.String()}
	goField := b.matchFields("", c.schema, t)
	var out []PersonalField
	for i, f := range c.schema.fields {
		if !f.personal {
			continue
		}
		if goField[i] < 0 {
			return nil, fmt.Errorf("schemas: %s: personal field %s has no Go field in %s", c.name, f.name, t)
		}
		sf := t.Field(goField[i])
		pf := PersonalField{Name: f.name, Index: goField[i]}
		switch {
		case sf.Type.Kind() == reflect.String:
		case sf.Type.Kind() == reflect.Pointer && sf.Type.Elem().Kind() == reflect.String:
			pf.Pointer = true
		default:
			return nil, fmt.Errorf("schemas: %s: personal field %s maps to Go field %s of type %s (need a string kind)", c.name, f.name, sf.Name, sf.Type)
		}
		out = append(out, pf)
	}
	return out, nil
}
