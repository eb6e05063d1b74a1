package schemas

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"unsafe"
)

// General unions (any union other than ["null", T]) map onto a Go struct
// with one pointer field per non-null branch, at most one of them set:
//
//	// ["null", "string", "kcqrs.example.Card"]
//	type Payment struct {
//		IBAN *string `avro:"string"`
//		Card *Card   // the branch kcqrs.example.Card, by its short name
//	}
//
// A field maps to the branch its avro tag names (the branch's full name, its
// short name for a record, enum or fixed, or the type name of any other:
// "string", "long", "array", "map", ...); without a tag, to the branch
// whose short or type name equals the field's name ignoring case. All
// fields nil is null, and an error when the union has no null branch; two
// fields set is an error.

// unionField is one branch of a general union and its Go field.
type unionField struct {
	branch int // index in the union
	key    string
	index  int // Go field index
	goName string
}

// matchUnion maps the non-null branches of union a onto the fields of
// struct t, reporting every mismatch through b.
func (b *convBuilder) matchUnion(path string, a *avroType, t reflect.Type) []unionField {
	var out []unionField
	taken := map[int]string{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag, hasTag := sf.Tag.Lookup("avro")
		tag, _, _ = strings.Cut(tag, ",")
		if tag == "-" {
			continue
		}
		if sf.Type.Kind() != reflect.Pointer {
			b.fail(path, "Go field %s of union struct %s is not a pointer", sf.Name, t)
			continue
		}
		match := -1
		for j, br := range a.branches {
			if br.kind == kindNull {
				continue
			}
			key := br.unionKey()
			short := key[strings.LastIndexByte(key, '.')+1:]
			if hasTag && tag != "" && (tag == key || tag == short) || !(hasTag && tag != "") && strings.EqualFold(sf.Name, short) {
				match = j
				break
			}
		}
		if match < 0 {
			b.fail(path, "Go field %s of %s matches no branch of Avro %s", sf.Name, t, a.describe())
			continue
		}
		if prev, ok := taken[match]; ok {
			b.fail(path, "Go fields %s and %s both map to branch %s", prev, sf.Name, a.branches[match].unionKey())
			continue
		}
		taken[match] = sf.Name
		out = append(out, unionField{branch: match, key: a.branches[match].unionKey(), index: i, goName: sf.Name})
	}
	for j, br := range a.branches {
		if _, ok := taken[j]; !ok && br.kind != kindNull {
			b.fail(path, "branch %s of Avro %s has no Go field in %s", br.unionKey(), a.describe(), t)
		}
	}
	return out
}

// nullBranch returns the index of union a's null branch, or -1.
func nullBranch(a *avroType) int {
	for i, br := range a.branches {
		if br.kind == kindNull {
			return i
		}
	}
	return -1
}

func (b *convBuilder) buildUnion(path string, a *avroType, t reflect.Type, c *converter) {
	fields := b.matchUnion(path, a, t)
	convs := make([]*converter, len(fields))
	for i, f := range fields {
		convs[i] = b.build(path, a.branches[f.branch], t.Field(f.index).Type.Elem())
	}
	hasNull := nullBranch(a) >= 0
	c.enc = func(v reflect.Value) (any, error) {
		set := -1
		for i, f := range fields {
			if v.Field(f.index).IsNil() {
				continue
			}
			if set >= 0 {
				return nil, fmt.Errorf("union fields %s and %s are both set", fields[set].goName, f.goName)
			}
			set = i
		}
		if set < 0 {
			if hasNull {
				return nil, nil
			}
			return nil, fmt.Errorf("no field of %s is set, and it has no null branch", a.describe())
		}
		x, err := convs[set].enc(v.Field(fields[set].index).Elem())
		if err != nil {
			return nil, err
		}
		return map[string]any{fields[set].key: x}, nil
	}
	c.dec = func(n any, v reflect.Value) error {
		if n == nil {
			if !hasNull {
				return nativeErr(n, "union")
			}
			for _, f := range fields {
				v.Field(f.index).SetZero()
			}
			return nil
		}
		x, ok := n.(map[string]any)
		if !ok || len(x) != 1 {
			return nativeErr(n, "union")
		}
		for i, f := range fields {
			e, ok := x[f.key]
			if !ok {
				continue
			}
			p := reflect.New(t.Field(f.index).Type.Elem())
			if err := convs[i].dec(e, p.Elem()); err != nil {
				return err
			}
			for _, g := range fields {
				v.Field(g.index).SetZero()
			}
			v.Field(f.index).Set(p)
			return nil
		}
		return nativeErr(n, "union")
	}
}

// buildUnion compiles a general union onto a struct of one pointer per
// non-null branch (see union.go for the mapping).
func (c *compiler) buildUnion(n *node, a *avroType, t reflect.Type) {
	b := &convBuilder{root: a.describe(), cache: map[convKey]*converter{}}
	fields := b.matchUnion("", a, t)
	if len(b.errs) > 0 {
		c.failed = true
		return
	}
	type branchField struct {
		idx  int64   // branch index
		off  uintptr // of the pointer field
		elem reflect.Type
		n    *node
		name string
	}
	bf := make([]branchField, len(fields))
	byBranch := make([]int, len(a.branches)) // branch index → bf index, -1 for null
	for i := range byBranch {
		byBranch[i] = -1
	}
	for i, f := range fields {
		sf := t.Field(f.index)
		bf[i] = branchField{idx: int64(f.branch), off: sf.Offset, elem: sf.Type.Elem(),
			n: c.build(a.branches[f.branch], sf.Type.Elem()), name: f.goName}
		byBranch[f.branch] = i
	}
	null := int64(nullBranch(a))
	n.enc = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
		set := -1
		for i := range bf {
			if *(*unsafe.Pointer)(unsafe.Add(p, bf[i].off)) == nil {
				continue
			}
			if set >= 0 {
				return nil, fmt.Errorf("union fields %s and %s are both set", bf[set].name, bf[i].name)
			}
			set = i
		}
		if set < 0 {
			if null < 0 {
				return nil, fmt.Errorf("no field of %s is set, and it has no null branch", a.describe())
			}
			return binary.AppendVarint(buf, null), nil
		}
		f := &bf[set]
		return f.n.enc(binary.AppendVarint(buf, f.idx), *(*unsafe.Pointer)(unsafe.Add(p, f.off)))
	}
	n.dec = func(buf []byte, p unsafe.Pointer) ([]byte, error) {
		i, buf, err := readLongFast(buf)
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= int64(len(a.branches)) {
			return nil, fmt.Errorf("union branch %d out of range", i)
		}
		var ev reflect.Value
		j := byBranch[i]
		if j >= 0 {
			ev = reflect.New(bf[j].elem)
			if buf, err = bf[j].n.dec(buf, ev.UnsafePointer()); err != nil {
				return nil, err
			}
		}
		v := reflect.NewAt(t, p).Elem()
		for k := range bf {
			v.Field(fields[k].index).SetZero()
		}
		if j >= 0 {
			v.Field(fields[j].index).Set(ev)
		}
		return buf, nil
	}
}
