package aggtest

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/kcqrs/kcqrs/aggregates"
)

// maxDiffLines bounds a difference report; a state of a thousand differing
// elements is better summarised than printed.
const maxDiffLines = 20

// maxDiffDepth stops the walk in cyclic or absurdly deep values.
const maxDiffDepth = 32

// show formats one value for a failure message, with its type.
func show(v any) string {
	if v == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%#v", v)
}

// eventList formats events one per line, continuation lines indented by
// indent.
func eventList(events []aggregates.Event, indent string) string {
	if len(events) == 0 {
		return "(none)"
	}
	parts := make([]string, len(events))
	for i, e := range events {
		parts[i] = show(e)
	}
	return strings.Join(parts, "\n"+indent)
}

// diffLines describes how got differs from want, one indented line per
// difference, each ending in a newline.
func diffLines(root string, want, got any) string {
	return diffWith(root, "want", "got", want, got) + "\n"
}

// diffBlock describes how after differs from before, for reports of
// mutation and nondeterminism.
func diffBlock(root string, before, after any) string {
	return diffWith(root, "before", "after", before, after)
}

func diffWith(root, wantWord, gotWord string, want, got any) string {
	d := &differ{want: wantWord, got: gotWord}
	d.walk(root, reflect.ValueOf(want), reflect.ValueOf(got), 0)
	if len(d.lines) == 0 {
		return "    (no difference found field by field; the values hold functions, NaNs or cycles)"
	}
	if d.truncated {
		d.lines = append(d.lines, "...")
	}
	return "    " + strings.Join(d.lines, "\n    ")
}

type differ struct {
	want, got string // the words naming the two sides
	lines     []string
	truncated bool
}

func (d *differ) add(path, format string, args ...any) {
	if len(d.lines) >= maxDiffLines {
		d.truncated = true
		return
	}
	d.lines = append(d.lines, path+": "+fmt.Sprintf(format, args...))
}

func (d *differ) both(path string, w, g reflect.Value) {
	d.add(path, "%s %s, %s %s", d.want, showValue(w), d.got, showValue(g))
}

func showValue(v reflect.Value) string {
	if !v.IsValid() {
		return "<nil>"
	}
	// fmt prints the value a reflect.Value holds, even an unexported field.
	return fmt.Sprintf("%#v", v)
}

// walk records the differences between w and g under path. The verdict of
// equality is always reflect.DeepEqual's; walk only explains it.
func (d *differ) walk(path string, w, g reflect.Value, depth int) {
	if d.truncated {
		return
	}
	if !w.IsValid() || !g.IsValid() {
		if w.IsValid() != g.IsValid() {
			d.both(path, w, g)
		}
		return
	}
	if w.Type() != g.Type() {
		d.both(path, w, g)
		return
	}
	if depth > maxDiffDepth {
		d.add(path, "values differ below this depth")
		return
	}
	switch w.Kind() {
	case reflect.Interface, reflect.Pointer:
		if w.IsNil() || g.IsNil() {
			if w.IsNil() != g.IsNil() {
				d.both(path, w, g)
			}
			return
		}
		if w.Kind() == reflect.Pointer && w.Pointer() == g.Pointer() {
			return
		}
		d.walk(path, w.Elem(), g.Elem(), depth+1)
	case reflect.Struct:
		for i := range w.NumField() {
			d.walk(path+"."+w.Type().Field(i).Name, w.Field(i), g.Field(i), depth+1)
		}
	case reflect.Slice, reflect.Array:
		if w.Kind() == reflect.Slice && w.Len() == 0 && g.Len() == 0 {
			if w.IsNil() != g.IsNil() {
				d.both(path, w, g) // nil and empty differ for DeepEqual
			}
			return
		}
		n := min(w.Len(), g.Len())
		for i := range n {
			d.walk(fmt.Sprintf("%s[%d]", path, i), w.Index(i), g.Index(i), depth+1)
		}
		for i := n; i < w.Len(); i++ {
			d.add(fmt.Sprintf("%s[%d]", path, i), "missing: %s %s", d.want, showValue(w.Index(i)))
		}
		for i := n; i < g.Len(); i++ {
			d.add(fmt.Sprintf("%s[%d]", path, i), "unexpected: %s %s", d.got, showValue(g.Index(i)))
		}
	case reflect.Map:
		if w.Len() == 0 && g.Len() == 0 {
			if w.IsNil() != g.IsNil() {
				d.both(path, w, g)
			}
			return
		}
		keys := slices.Concat(w.MapKeys(), g.MapKeys())
		slices.SortFunc(keys, func(a, b reflect.Value) int { return cmp.Compare(showValue(a), showValue(b)) })
		keys = slices.CompactFunc(keys, func(a, b reflect.Value) bool { return showValue(a) == showValue(b) })
		for _, k := range keys {
			p := fmt.Sprintf("%s[%s]", path, showValue(k))
			wv, gv := w.MapIndex(k), g.MapIndex(k)
			switch {
			case !wv.IsValid():
				d.add(p, "unexpected key: %s %s", d.got, showValue(gv))
			case !gv.IsValid():
				d.add(p, "missing key: %s %s", d.want, showValue(wv))
			default:
				d.walk(p, wv, gv, depth+1)
			}
		}
	case reflect.Func:
		if !w.IsNil() || !g.IsNil() {
			d.add(path, "functions are never equal unless both are nil")
		}
	case reflect.Chan, reflect.UnsafePointer:
		if w.Pointer() != g.Pointer() {
			d.both(path, w, g)
		}
	default: // bool, numbers, strings: comparable scalars
		if !w.Equal(g) {
			d.both(path, w, g)
		}
	}
}
