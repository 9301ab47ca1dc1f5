package idemhttp

import (
	"errors"
	"strings"
)

// MaxKeyLen is the longest key the middleware accepts, in characters.
const MaxKeyLen = 255

var (
	errKeyEmpty    = errors.New("empty key")
	errKeyTooLong  = errors.New("key longer than 255 characters")
	errKeyBadChars = errors.New("key must be printable ASCII without spaces")
	errKeyBadForm  = errors.New("key must be a structured-field string or a bare token")
)

// ParseKey parses one Idempotency-Key field value: an RFC 9651 sf-string
// ("abc", with \" and \\ escapes) or a bare token (abc), which mean the same
// key. The key is 1 to 255 characters of printable ASCII without spaces.
// Keys are case-sensitive and never rewritten.
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
			if c := v[i]; c == '"' || c == ',' || c == ';' || c == '\\' {
				return "", errKeyBadForm
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
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return "", errKeyBadChars
		}
	}
	return key, nil
}
