package projection

import "testing"

// TestServerOpensPersonalFields: with OpenPersonal set, the account the
// query API returns carries the opened owner; without it, the stored value.
func TestServerOpensPersonalFields(t *testing.T) {
	stored := Account{ID: "acc-1", Owner: "kcqrs:p1:sealed", Currency: "EUR", Balance: 5, Version: 2}
	plain := &Server{}
	if got := plain.openAccount(stored); got != stored {
		t.Fatalf("without OpenPersonal: %+v", got)
	}
	var asked [3]string
	s := &Server{cfg: ServerConfig{OpenPersonal: func(typ, id, v string) string {
		asked = [3]string{typ, id, v}
		return "Ada"
	}}}
	got := s.openAccount(stored)
	if got.Owner != "Ada" || got.Balance != 5 || got.Version != 2 || stored.Owner != "kcqrs:p1:sealed" {
		t.Fatalf("opened %+v (stored %+v)", got, stored)
	}
	if asked != [3]string{"account", "acc-1", "kcqrs:p1:sealed"} {
		t.Fatalf("OpenPersonal called with %q", asked)
	}
}
