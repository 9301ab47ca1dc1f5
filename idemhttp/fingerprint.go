package idemhttp

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"mime"
	"net/http"
	"strings"
	"sync"
)

// Fingerprint is the default request fingerprint: SHA-256 over a
// length-prefixed tuple of the method, the path, the query with its keys
// sorted (each key's values in their order), the media type of
// Content-Type (without parameters, lower case) and the body. A key reused
// on another endpoint, or with another payload, therefore mismatches.
func Fingerprint(r *http.Request, body []byte) []byte {
	f := fingerprinters.Get().(*fingerprinter)
	defer fingerprinters.Put(f)
	f.h.Reset()
	query := ""
	if r.URL.RawQuery != "" {
		query = r.URL.Query().Encode()
	}
	for _, part := range []string{r.Method, r.URL.EscapedPath(), query, mediaType(r.Header.Get("Content-Type"))} {
		f.writeField([]byte(part))
	}
	f.writeField(body)
	return f.h.Sum(nil)
}

// mediaType is the media type of a Content-Type value, without its
// parameters, in lower case (or the whole value, trimmed and lowered, when
// it does not parse).
func mediaType(contentType string) string {
	if !strings.Contains(contentType, ";") {
		// What ParseMediaType returns for a value without parameters, and
		// what the fallback below makes of one it refuses: without the
		// map of parameters it allocates.
		return strings.ToLower(strings.TrimSpace(contentType))
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(contentType))
	}
	return mt
}

// fingerprinter is a hash and the scratch for its length prefixes, pooled
// so that a fingerprint allocates only its result.
type fingerprinter struct {
	h      hash.Hash
	prefix []byte
}

var fingerprinters = sync.Pool{New: func() any {
	return &fingerprinter{h: sha256.New(), prefix: make([]byte, 8)}
}}

func (f *fingerprinter) writeField(b []byte) {
	binary.BigEndian.PutUint64(f.prefix, uint64(len(b)))
	_, _ = f.h.Write(f.prefix)
	_, _ = f.h.Write(b)
}
