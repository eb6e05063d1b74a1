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

// unmarshalAccount is json.Unmarshal(data, a) into a zero Account, without
// reflection for what appendAccount writes (fields in its order, plain
// strings, integers); anything else is left to encoding/json.
// TestUnmarshalAccountIsJSONUnmarshal holds it to encoding/json.
func unmarshalAccount(data []byte, a *Account) error {
	*a = Account{}
	if fastAccount(data, a) {
		return nil
	}
	*a = Account{}
	return json.Unmarshal(data, a)
}

func fastAccount(b []byte, a *Account) bool {
	var ok bool
	if b, ok = jsonLit(b, `{"id":`); !ok {
		return false
	}
	if a.ID, b, ok = jsonStr(b); !ok {
		return false
	}
	if r, ok := jsonLit(b, `,"owner":`); ok {
		if a.Owner, b, ok = jsonStr(r); !ok {
			return false
		}
	}
	if r, ok := jsonLit(b, `,"currency":`); ok {
		if a.Currency, b, ok = jsonStr(r); !ok {
			return false
		}
	}
	if b, ok = jsonLit(b, `,"status":`); !ok {
		return false
	}
	if a.Status, b, ok = jsonStr(b); !ok {
		return false
	}
	if b, ok = jsonLit(b, `,"balance":`); !ok {
		return false
	}
	if a.Balance, b, ok = jsonInt(b); !ok {
		return false
	}
	if b, ok = jsonLit(b, `,"version":`); !ok {
		return false
	}
	if a.Version, b, ok = jsonInt(b); !ok {
		return false
	}
	if r, ok := jsonLit(b, `,"gaps":`); ok {
		if a.Gaps, b, ok = jsonInt(r); !ok {
			return false
		}
	}
	if r, ok := jsonLit(b, `,"skipped":`); ok {
		if a.Skipped, b, ok = jsonInt(r); !ok {
			return false
		}
	}
	if b, ok = jsonLit(b, `,"updatedMillis":`); !ok {
		return false
	}
	if a.UpdatedMillis, b, ok = jsonInt(b); !ok {
		return false
	}
	return len(b) == 1 && b[0] == '}'
}

// jsonLit consumes lit from the start of b.
func jsonLit(b []byte, lit string) ([]byte, bool) {
	if len(b) < len(lit) || string(b[:len(lit)]) != lit {
		return b, false
	}
	return b[len(lit):], true
}

// jsonStr consumes a quoted string of printable ASCII without escapes.
func jsonStr(b []byte) (string, []byte, bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", b, false
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return string(b[1:i]), b[i+1:], true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return "", b, false
		}
	}
	return "", b, false
}

// jsonInt consumes an integer as JSON writes it (no leading zeros, no
// fraction or exponent) that fits an int64.
func jsonInt(b []byte) (int64, []byte, bool) {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == start || (b[start] == '0' && i-start > 1) {
		return 0, b, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, b, false
	}
	n, err := strconv.ParseInt(string(b[:i]), 10, 64)
	if err != nil {
		return 0, b, false
	}
	return n, b[i:], true
}
