package idemhttp

import (
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
)

// A stored response, version 1:
//
//	version u8 | kind u8 | status u16 | header count uvarint |
//	(len name, name, len value, value)* | body
//
// Each header value is kept verbatim, one entry per value.
const responseVersion = 1

// Kinds of stored response.
const (
	kindReplayable  byte = 1 // status, headers and body
	kindUnavailable byte = 2 // the handler's response cannot be replayed (streamed, hijacked, too large)
)

var errBadResponse = errors.New("idemhttp: damaged stored response")

// storedResponse is a response as stored and replayed.
type storedResponse struct {
	kind   byte
	status int
	header http.Header
	body   []byte
}

// neverReplayed are response headers a replay must not repeat: cookies and
// credentials belong to one exchange, hop-by-hop fields to one connection,
// and Date and Content-Length are recomputed.
var neverReplayed = map[string]bool{
	"Set-Cookie": true, "Authorization": true, "Www-Authenticate": true,
	"Proxy-Authenticate": true, "Authentication-Info": true, "Proxy-Authentication-Info": true,
	"Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Proxy-Connection": true,
	"Date": true, "Content-Length": true, "Idempotent-Replayed": true,
}

func (r *storedResponse) encode(drop map[string]bool) []byte {
	b := []byte{responseVersion, r.kind}
	b = binary.BigEndian.AppendUint16(b, uint16(r.status))
	type kv struct{ k, v string }
	var hs []kv
	for name, values := range r.header {
		name = http.CanonicalHeaderKey(name)
		if neverReplayed[name] || drop[name] || strings.HasPrefix(name, http.TrailerPrefix) {
			continue
		}
		for _, v := range values {
			hs = append(hs, kv{name, v})
		}
	}
	b = binary.AppendUvarint(b, uint64(len(hs)))
	for _, h := range hs {
		b = binary.AppendUvarint(b, uint64(len(h.k)))
		b = append(b, h.k...)
		b = binary.AppendUvarint(b, uint64(len(h.v)))
		b = append(b, h.v...)
	}
	return append(b, r.body...)
}

// StoredResponse is a record's value as the middleware stores it: the
// response a retry is sent. Tools that show a store's records read it with
// DecodeResponse; idem get does.
type StoredResponse struct {
	Status int
	Header http.Header // as replayed: cookies, credentials and hop-by-hop fields were never stored
	Body   []byte
	// Replayable is false for a response that was streamed, hijacked or
	// too large to keep: a retry is answered 409 with the problem type
	// ProblemResponseUnavailable, and Header and Body are empty.
	Replayable bool
}

// DecodeResponse decodes a record's value stored by the middleware. An
// error says the value is not one (another application's value, or
// damaged).
func DecodeResponse(value []byte) (StoredResponse, error) {
	r, err := decodeResponse(value)
	if err != nil {
		return StoredResponse{}, err
	}
	return StoredResponse{Status: r.status, Header: r.header, Body: r.body, Replayable: r.kind == kindReplayable}, nil
}

func decodeResponse(b []byte) (*storedResponse, error) {
	if len(b) < 4 || b[0] != responseVersion || (b[1] != kindReplayable && b[1] != kindUnavailable) {
		return nil, errBadResponse
	}
	r := &storedResponse{kind: b[1], status: int(binary.BigEndian.Uint16(b[2:4]))}
	b = b[4:]
	n, m := binary.Uvarint(b)
	if m <= 0 || n > uint64(len(b)) {
		return nil, errBadResponse
	}
	b = b[m:]
	// The fields are found first and then cut from one string of the
	// header block, and the values from one slice: a replay allocates a
	// few objects for its headers, not a few per header.
	type span struct{ k0, k1, v0, v1 int }
	spans := make([]span, 0, n)
	at := 0
	field := func() (int, int, bool) {
		l, m := binary.Uvarint(b[at:])
		if m <= 0 || l > uint64(len(b)-at-m) {
			return 0, 0, false
		}
		start := at + m
		at = start + int(l)
		return start, at, true
	}
	for range n {
		k0, k1, ok1 := field()
		v0, v1, ok2 := field()
		if !ok1 || !ok2 {
			return nil, errBadResponse
		}
		spans = append(spans, span{k0, k1, v0, v1})
	}
	block := string(b[:at])
	values := make([]string, len(spans))
	r.header = make(http.Header, len(spans))
	for i, sp := range spans {
		k := block[sp.k0:sp.k1]
		values[i] = block[sp.v0:sp.v1]
		if prev, ok := r.header[k]; ok {
			r.header[k] = append(prev, values[i])
		} else {
			r.header[k] = values[i : i+1 : i+1]
		}
	}
	b = b[at:]
	if r.status < 100 || r.status > 999 {
		return nil, errBadResponse
	}
	r.body = b
	return r, nil
}
