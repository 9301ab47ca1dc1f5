package idem

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestValidScopeName(t *testing.T) {
	for _, ok := range []string{"a", "payments", "web-hooks_v2.eu", strings.Repeat("z", MaxScopeLen)} {
		assert.True(t, validScopeName(ok), ok)
	}
	for _, bad := range []string{"", "A", "a b", "a/b", "a\x00", "é", strings.Repeat("z", MaxScopeLen+1)} {
		assert.False(t, validScopeName(bad), bad)
	}
}

func TestKeyEncodingIsATuple(t *testing.T) {
	triples := [][3]string{
		{"a", "", "bc"}, {"a", "b", "c"}, {"ab", "", "c"}, {"a", "bc", ""},
		{"a", "\x01", "x"}, {"a", "", "\x01x"}, {"a", "\x00", ""},
	}
	seen := map[string][3]string{}
	for _, tr := range triples {
		k := string(appendKey(nil, keyPrefix(tr[0], tr[1]), tr[2]))
		if prev, dup := seen[k]; dup {
			t.Fatalf("%q and %q encode alike", prev, tr)
		}
		seen[k] = tr
		s, tn, key, ok := splitKey([]byte(k))
		assert.True(t, ok)
		assert.Equal(t, tr, [3]string{s, tn, key})
	}
}

// FuzzKeyEncoding checks that encoding is injective (decoding gives the
// parts back) and that decoding arbitrary bytes never panics.
func FuzzKeyEncoding(f *testing.F) {
	f.Add("payments", "acct_42", "order-1", []byte{recordPrefix, 1, 'a', 0})
	f.Add("a", "", "", []byte{})
	f.Fuzz(func(t *testing.T, scope, tenant, key string, raw []byte) {
		splitKey(raw) // must not panic
		if !validScopeName(scope) || len(tenant) > MaxTenantLen || checkKey(key, nil) != nil {
			return
		}
		k := appendKey(nil, keyPrefix(scope, tenant), key)
		s, tn, kk, ok := splitKey(k)
		if !ok || s != scope || tn != tenant || kk != key {
			t.Fatalf("(%q, %q, %q) decodes as (%q, %q, %q, %v)", scope, tenant, key, s, tn, kk, ok)
		}
		if !bytes.HasPrefix(k, keyPrefix(scope, tenant)) {
			t.Fatal("key does not start with its prefix")
		}
	})
}
