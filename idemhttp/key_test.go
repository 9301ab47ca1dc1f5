package idemhttp

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"mime"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseKey(t *testing.T) {
	for in, want := range map[string]string{
		`abc`:                    "abc",
		`"abc"`:                  "abc",
		`  "abc"  `:              "abc",
		`"a\"b"`:                 `a"b`,
		`"a\\b"`:                 `a\b`,
		`8e03978e-40d5-43e8`:     "8e03978e-40d5-43e8",
		`ABC`:                    "ABC", // case kept
		strings.Repeat("k", 255): strings.Repeat("k", 255),
		`"a b"`:                  "a b", // an sf-string may hold spaces
		`" a "`:                  " a ",
		`"~!@#$%^&*()"`:          "~!@#$%^&*()",
	} {
		got, err := ParseKey(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{
		``, `""`, `"abc`, `"a"b"`, `"a";p=1`, `a, b`, `"a", "b"`, `a;b`, `a b`, "a\tb", "\"a\tb\"",
		`"a\x"`, "\"\x01\"", "ü", strings.Repeat("k", 256), `"` + strings.Repeat("k", 256) + `"`,
	} {
		_, err := ParseKey(in)
		assert.Error(t, err, "%q", in)
	}
}

// FuzzParseKey checks that the parser never panics, that what it accepts
// is a valid key, and that quoting an accepted key gives it back.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{`abc`, `"abc"`, `"a\"b"`, `a, b`, ``, `"`, `"\`, "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		key, err := ParseKey(in)
		if err != nil {
			return
		}
		if key == "" || len(key) > MaxKeyLen {
			t.Fatalf("%q gave %q", in, key)
		}
		for i := 0; i < len(key); i++ {
			if key[i] < 0x20 || key[i] > 0x7e {
				t.Fatalf("%q gave %q", in, key)
			}
		}
		if !strings.HasPrefix(strings.TrimLeft(in, " \t"), `"`) && strings.Contains(key, " ") {
			t.Fatalf("bare %q gave %q, with a space", in, key)
		}
		quoted := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(key) + `"`
		again, err := ParseKey(quoted)
		if err != nil || again != key {
			t.Fatalf("%q: quoted form %q gave %q, %v", key, quoted, again, err)
		}
	})
}

func TestResponseRoundTrip(t *testing.T) {
	r := &storedResponse{kind: kindReplayable, status: 201, header: http.Header{
		"Content-Type": {"application/json"}, "Link": {"</a>", "</b>"}, "Set-Cookie": {"s=1"},
		"Date": {"x"}, "X-Id": {"1"},
	}, body: []byte(`{"ok":true}`)}
	got, err := decodeResponse(r.encode(map[string]bool{"X-Id": true}))
	require.NoError(t, err)
	assert.Equal(t, 201, got.status)
	assert.Equal(t, http.Header{"Content-Type": {"application/json"}, "Link": {"</a>", "</b>"}}, got.header)
	assert.Equal(t, r.body, got.body)
}

// FuzzDecodeResponse checks that a damaged stored response is an error,
// never a panic, and that what decodes encodes back alike.
func FuzzDecodeResponse(f *testing.F) {
	f.Add((&storedResponse{kind: kindReplayable, status: 200, header: http.Header{"A": {"b"}}, body: []byte("x")}).encode(nil))
	f.Add((&storedResponse{kind: kindUnavailable, status: 200}).encode(nil))
	f.Add([]byte{1, 1, 0, 200, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeResponse(b)
		if err != nil {
			return
		}
		again, err := decodeResponse(r.encode(nil))
		require.NoError(t, err)
		assert.Equal(t, r.status, again.status)
		assert.Equal(t, string(r.body), string(again.body))
	})
}

// FuzzFingerprint checks that the fingerprint never panics, is stable, and
// tells apart requests that differ in body or path.
func FuzzFingerprint(f *testing.F) {
	f.Add("POST", "/orders", "a=1&b=2", "application/json; charset=utf-8", []byte(`{"x":1}`))
	f.Add("PATCH", "/%zz", "%%", "", []byte{})
	f.Fuzz(func(t *testing.T, method, path, query, contentType string, body []byte) {
		r, err := http.NewRequest("POST", "http://h/", nil)
		require.NoError(t, err)
		r.Method, r.URL.Path, r.URL.RawQuery = method, path, query
		r.Header.Set("Content-Type", contentType)
		a, b := Fingerprint(r, body), Fingerprint(r, body)
		assert.Len(t, a, 32)
		assert.Equal(t, a, b)
		assert.Equal(t, referenceFingerprint(r, body), a, "stored fingerprints must keep matching")
		assert.NotEqual(t, a, Fingerprint(r, append(bytes.Clone(body), 'x')))
	})
}

// referenceFingerprint is Fingerprint as first written, plainly: stores
// hold fingerprints made by it, so a faster Fingerprint must give the same
// bytes.
func referenceFingerprint(r *http.Request, body []byte) []byte {
	h := sha256.New()
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mediaType = strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Type")))
	}
	for _, part := range [][]byte{[]byte(r.Method), []byte(r.URL.EscapedPath()), []byte(r.URL.Query().Encode()), []byte(mediaType), body} {
		_, _ = h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(part))))
		_, _ = h.Write(part)
	}
	return h.Sum(nil)
}
