package idemhttp

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"mime"
	"net/http"
	"strings"
)

// Fingerprint is the default request fingerprint: SHA-256 over a
// length-prefixed tuple of the method, the path, the query with its keys
// sorted (each key's values in their order), the media type of
// Content-Type (without parameters, lower case) and the body. A key reused
// on another endpoint, or with another payload, therefore mismatches.
func Fingerprint(r *http.Request, body []byte) []byte {
	h := sha256.New()
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mediaType = strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Type")))
	}
	for _, part := range []string{r.Method, r.URL.EscapedPath(), r.URL.Query().Encode(), mediaType} {
		writeField(h, []byte(part))
	}
	writeField(h, body)
	return h.Sum(nil)
}

func writeField(h hash.Hash, b []byte) {
	_, _ = h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
	_, _ = h.Write(b)
}
