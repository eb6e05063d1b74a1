package projection

import (
	"encoding/json"
	"strconv"
)

// encodeAccount is json.Marshal(a), byte for byte, without reflection: the
// writer encodes every entry it writes, and encoding/json's reflection was
// the largest piece of its CPU. A string that encoding/json would escape
// (quotes, backslashes, control characters, <, >, &, anything not ASCII)
// falls back on json.Marshal. TestEncodeAccountIsJSONMarshal holds it to
// encoding/json, field list included.
func encodeAccount(a *Account) ([]byte, error) {
	return appendAccount(make([]byte, 0, accountJSONSize(a)), a)
}

// accountJSONSize is at least the size of a's encoding when its strings are
// plain (what appendAccount writes itself).
func accountJSONSize(a *Account) int {
	return 160 + len(a.ID) + len(a.Owner) + len(a.Currency) + len(a.Status)
}

// appendAccount appends encodeAccount(a) to b: the writer encodes a batch's
// entries into one buffer.
func appendAccount(b []byte, a *Account) ([]byte, error) {
	if !plainJSON(a.ID) || !plainJSON(a.Owner) || !plainJSON(a.Currency) || !plainJSON(a.Status) {
		v, err := json.Marshal(a)
		return append(b, v...), err
	}
	b = append(append(append(b, `{"id":"`...), a.ID...), '"')
	if a.Owner != "" {
		b = append(append(append(b, `,"owner":"`...), a.Owner...), '"')
	}
	if a.Currency != "" {
		b = append(append(append(b, `,"currency":"`...), a.Currency...), '"')
	}
	b = append(append(append(b, `,"status":"`...), a.Status...), '"')
	b = strconv.AppendInt(append(b, `,"balance":`...), a.Balance, 10)
	b = strconv.AppendInt(append(b, `,"version":`...), a.Version, 10)
	if a.Gaps != 0 {
		b = strconv.AppendInt(append(b, `,"gaps":`...), a.Gaps, 10)
	}
	if a.Skipped != 0 {
		b = strconv.AppendInt(append(b, `,"skipped":`...), a.Skipped, 10)
	}
	b = strconv.AppendInt(append(b, `,"updatedMillis":`...), a.UpdatedMillis, 10)
	return append(b, '}'), nil
}

// encodeTotal is json.Marshal(t) (TestEncodeTotalIsJSONMarshal), without
// reflection for a plain currency.
func encodeTotal(t *CurrencyTotal) ([]byte, error) {
	if !plainJSON(t.Currency) {
		return json.Marshal(t)
	}
	b := make([]byte, 0, 128+len(t.Currency))
	b = append(append(append(b, `{"currency":"`...), t.Currency...), '"')
	b = strconv.AppendInt(append(b, `,"partition":`...), int64(t.Partition), 10)
	b = strconv.AppendInt(append(b, `,"total":`...), t.Total, 10)
	b = strconv.AppendInt(append(b, `,"accounts":`...), t.Accounts, 10)
	b = strconv.AppendInt(append(b, `,"openAccounts":`...), t.Open, 10)
	b = strconv.AppendInt(append(b, `,"seq":`...), t.Seq, 10)
	return append(b, '}'), nil
}

// plainJSON reports whether encoding/json writes s as it is, between quotes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x80, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
