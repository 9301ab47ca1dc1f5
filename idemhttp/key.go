package idemhttp

import (
	"errors"
	"fmt"
	"strings"

	"github.com/idemkit/idem"
)

// MaxKeyLen is the longest key the middleware accepts, in characters: the
// store's own limit.
const MaxKeyLen = idem.MaxKeyLen

var (
	errKeyEmpty    = errors.New("empty key")
	errKeyTooLong  = fmt.Errorf("key longer than %d characters", MaxKeyLen)
	errKeyBadChars = errors.New("key must be printable ASCII (spaces only inside quotes)")
	errKeyBadForm  = errors.New("key must be a structured-field string or a bare token")
)

// ParseKey parses one Idempotency-Key field value: an RFC 8941 sf-string
// ("abc", with \" and \\ escapes; any printable ASCII, spaces included)
// or, leniently, a bare token (abc: printable ASCII without spaces,
// quotes, commas, semicolons or backslashes), which means the same key as
// its quoted form. Whitespace around the value is ignored. The key is 1 to
// MaxKeyLen characters; keys are case-sensitive and never rewritten.
func ParseKey(field string) (string, error) {
	v := strings.Trim(field, " \t")
	var key string
	if strings.HasPrefix(v, `"`) {
		var b strings.Builder
		closed := false
		for i := 1; i < len(v); i++ {
			c := v[i]
			switch {
			case c == '\\':
				i++
				if i == len(v) || (v[i] != '"' && v[i] != '\\') {
					return "", errKeyBadForm
				}
				b.WriteByte(v[i])
			case c == '"':
				if i != len(v)-1 {
					return "", errKeyBadForm // parameters or a list
				}
				closed = true
			case c < 0x20 || c > 0x7e:
				return "", errKeyBadChars
			default:
				b.WriteByte(c)
			}
		}
		if !closed {
			return "", errKeyBadForm
		}
		key = b.String()
	} else {
		for i := 0; i < len(v); i++ {
			switch c := v[i]; {
			case c == '"' || c == ',' || c == ';' || c == '\\':
				return "", errKeyBadForm
			case c < 0x21 || c > 0x7e:
				return "", errKeyBadChars
			}
		}
		key = v
	}
	switch {
	case key == "":
		return "", errKeyEmpty
	case len(key) > MaxKeyLen:
		return "", errKeyTooLong
	}
	return key, nil
}
