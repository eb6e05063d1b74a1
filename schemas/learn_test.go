package schemas

import (
	"errors"
	"strings"
	"testing"
)

// TestLearnNewerWriterSchema: an older build (current E {a}) learns the
// writer schema of a newer build (E {a, b with a default}) and reads its
// data by resolution; before learning the data is an *UnknownSchemaError.
// A schema of another record, or one the current schema cannot read (not
// forward compatible), is refused, and nothing is learned.
func TestLearnNewerWriterSchema(t *testing.T) {
	old := loadMap(t, map[string]string{"d/E.avsc": recordNamed("E", `{"name":"a","type":"long"}`)})
	newer := loadMap(t, map[string]string{
		"d/E.avsc":            recordNamed("E", `{"name":"a","type":"long"},{"name":"b","type":"string","default":"x"}`),
		"d/history/E.v1.avsc": recordNamed("E", `{"name":"a","type":"long"}`),
	})
	nc, _ := newer.Codec("E")
	body, err := nc.Avro().BinaryFromNative(nil, map[string]any{"a": int64(7), "b": "new"})
	if err != nil {
		t.Fatal(err)
	}
	hdr := singleObjectHeader(nc.Fingerprint())
	data := append(hdr[:], body...)
	u, err := old.Upcasting()
	if err != nil {
		t.Fatal(err)
	}
	var ue *UnknownSchemaError
	if _, err := u.Decode(data); !errors.As(err, &ue) || ue.Fingerprint != nc.Fingerprint() {
		t.Fatalf("before learning: %v", err)
	}
	for _, bad := range []struct{ text, want string }{
		{recordNamed("F", `{"name":"a","type":"long"}`), "not a current record of this set: t.F"},
		{recordNamed("E", `{"name":"a","type":"string"}`), "cannot be read by the current schema (not forward compatible)"},
	} {
		if _, err := old.Learn(fingerprintOf(t, bad.text), []byte(bad.text)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Learn(%s): %v, want %q", bad.text, err, bad.want)
		}
	}
	if _, err := old.Learn(nc.Fingerprint()+1, []byte(nc.Source())); err == nil || !strings.Contains(err.Error(), "has fingerprint") {
		t.Errorf("Learn under the wrong fingerprint: %v", err)
	}
	if l := old.Learned(); len(l) != 0 {
		t.Fatalf("learned %v from refused schemas", l)
	}
	c, err := old.Learn(nc.Fingerprint(), []byte(nc.Source()))
	if err != nil || c.Fingerprint() != nc.Fingerprint() {
		t.Fatalf("Learn: %v, %v", c, err)
	}
	if again, err := old.Learn(nc.Fingerprint(), []byte(nc.Source())); err != nil || again != c {
		t.Fatalf("Learn again: %v, %v", again, err)
	}
	if w, ok := old.ByFingerprint(nc.Fingerprint()); !ok || w != c {
		t.Fatal("ByFingerprint does not find the learned schema")
	}
	recs, err := u.Decode(data)
	if err != nil || len(recs) != 1 || recs[0].Name != "E" || recs[0].Version != 1 || recs[0].Fields["a"] != int64(7) || len(recs[0].Fields) != 1 {
		t.Fatalf("after learning: %+v, %v", recs, err)
	}
	if known := old.Known(); len(known) != 1 {
		t.Fatalf("Known lists learned schemas: %v", known)
	}
}

func fingerprintOf(t *testing.T, text string) uint64 {
	t.Helper()
	c, err := newCodec("t", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c.Fingerprint()
}

// TestLearnRefusesRecordsWithUpcasters: a version outside history/ has no
// place in an upcaster chain, so a record with upcasters learns nothing;
// one without learns through its Upcasting.
func TestLearnRefusesRecordsWithUpcasters(t *testing.T) {
	s := loadMap(t, map[string]string{
		"d/E.avsc":            recordNamed("E", `{"name":"a","type":"long"},{"name":"c","type":"long","default":0}`),
		"d/history/E.v1.avsc": recordNamed("E", `{"name":"a","type":"long"}`),
		"d/G.avsc":            recordNamed("G", `{"name":"a","type":"long"}`),
	})
	u, err := s.Upcasting(Upcaster{Name: "E", Version: 1, Up: func(r Record) ([]Record, error) {
		return []Record{{Name: "E", Version: 2, Fields: map[string]any{"a": r.Fields["a"], "c": r.Fields["a"]}}}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	newerE := recordNamed("E", `{"name":"a","type":"long"},{"name":"c","type":"long","default":0},{"name":"d","type":"string","default":""}`)
	if _, err := u.Learn(fingerprintOf(t, newerE), []byte(newerE)); err == nil || !strings.Contains(err.Error(), "has upcasters") {
		t.Fatalf("Learn for a record with upcasters: %v", err)
	}
	newerG := recordNamed("G", `{"name":"a","type":"long"},{"name":"d","type":"string","default":""}`)
	if _, err := u.Learn(fingerprintOf(t, newerG), []byte(newerG)); err != nil {
		t.Fatalf("Learn for a record without upcasters: %v", err)
	}
	if n := len(s.Learned()); n != 1 {
		t.Fatalf("learned %d schemas, want 1", n)
	}
}
