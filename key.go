package idem

// Persisted keys are tuples, never joined strings: a record key is
//
//	recordPrefix | len(scope) | scope | len(tenant) | tenant | key
//
// with one length byte before scope and tenant (both at most 255 bytes), and
// the key as the rest. Two distinct (scope, tenant, key) triples therefore
// always encode differently, whatever bytes they contain. An empty tenant
// (len 0) is the scope's own key space; tenant ids are never empty.
//
// Every key starts with recordPrefix, as the backend contract says, so an
// engine may keep data of its own under other first bytes.
const recordPrefix byte = 0x01 // records, ordered by scope, tenant, key

// Limits on the parts of a key, checked on every call.
const (
	// MaxKeyLen is the longest idempotency key, in bytes.
	MaxKeyLen = 255
	// MaxTenantLen is the longest tenant id, in bytes.
	MaxTenantLen = 255
	// MaxScopeLen is the longest scope name, in bytes.
	MaxScopeLen = 64
	// MaxFingerprintLen is the longest request fingerprint, in bytes.
	MaxFingerprintLen = 255
)

// validScopeName reports whether name is 1..MaxScopeLen bytes of [a-z0-9._-].
func validScopeName(name string) bool {
	if len(name) == 0 || len(name) > MaxScopeLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkKey validates a caller's key and fingerprint.
func checkKey(key string, fingerprint []byte) error {
	if len(key) == 0 {
		return invalid(ErrInvalidKey, "empty key")
	}
	if len(key) > MaxKeyLen {
		return invalid(ErrInvalidKey, "key is %d bytes, at most %d", len(key), MaxKeyLen)
	}
	if len(fingerprint) > MaxFingerprintLen {
		return invalid(ErrInvalidKey, "fingerprint is %d bytes, at most %d", len(fingerprint), MaxFingerprintLen)
	}
	return nil
}

// keyPrefix encodes the (scope, tenant) part of a record key.
func keyPrefix(scope, tenant string) []byte {
	p := make([]byte, 0, 3+len(scope)+len(tenant))
	p = append(p, recordPrefix, byte(len(scope)))
	p = append(p, scope...)
	p = append(p, byte(len(tenant)))
	return append(p, tenant...)
}

// stackKeyLen is how long a record key may be and still be built on the
// stack by a lookup (see Scope.acquire).
const stackKeyLen = 160

// appendKey appends the record key of key under prefix to dst.
func appendKey(dst, prefix []byte, key string) []byte {
	dst = append(dst, prefix...)
	return append(dst, key...)
}

// splitKey decodes a record key into its scope, tenant and key. ok is false
// for anything that is not a well-formed record key.
func splitKey(k []byte) (scope, tenant, key string, ok bool) {
	if len(k) < 2 || k[0] != recordPrefix {
		return "", "", "", false
	}
	n := int(k[1])
	rest := k[2:]
	if n == 0 || len(rest) < n+1 {
		return "", "", "", false
	}
	scope, rest = string(rest[:n]), rest[n:]
	m := int(rest[0])
	rest = rest[1:]
	if len(rest) < m {
		return "", "", "", false
	}
	return scope, string(rest[:m]), string(rest[m:]), true
}
