// Package adminapi is the admin protocol: what the admin handler
// (idem.Store.AdminHandler) and its client (the idem CLI's -url) must
// agree on — paths, query parameters, headers — written once, so that the
// two cannot drift apart.
package adminapi

import (
	"errors"
	"net/url"
	"strconv"
)

// The handler's paths, each with its method.
const (
	PathStats   = "/stats"   // GET: idem.Stats as JSON
	PathRecords = "/records" // GET, a Filter: idem.RecordInfo as JSON lines
	PathRecord  = "/record"  // GET, a Key: one idem.RecordInfo, with its value
	PathGC      = "/gc"      // POST: run a collection; idem.GCStats as JSON
	PathDelete  = "/delete"  // POST, a Key: delete one record
)

const (
	// MutationHeader must be set, to MutationValue, on every request that
	// changes the store (POST /gc, POST /delete). A browser cannot send it
	// cross-origin without a preflight that the handler never allows, so
	// a web page cannot make an operator's browser delete a key.
	MutationHeader = "Idem-Admin"
	MutationValue  = "mutate"

	// ProtocolHeader is set, to ProtocolVersion, on every response of
	// the handler, refusals included: a client tells an admin endpoint
	// from any other server by it.
	ProtocolHeader  = "Idem-Admin-Protocol"
	ProtocolVersion = "1"

	// TokenEnv names the environment variable the CLI takes a bearer
	// token from (AdminOptions.Token), when -token is not given.
	TokenEnv = "IDEM_ADMIN_TOKEN"
)

// Key names one record: the query of PathRecord and PathDelete.
type Key struct{ Scope, Tenant, Key string }

// Query encodes k.
func (k Key) Query() url.Values {
	return url.Values{"scope": {k.Scope}, "tenant": {k.Tenant}, "key": {k.Key}}
}

// ParseKey decodes a Key from a query.
func ParseKey(q url.Values) Key { return Key{q.Get("scope"), q.Get("tenant"), q.Get("key")} }

// Filter selects records: the query of PathRecords (idem.RecordFilter on
// the wire).
type Filter struct {
	Scope, Tenant, State, Prefix string
	Expired, Values              bool
	Limit                        int
}

// Query encodes f, leaving out what is zero.
func (f Filter) Query() url.Values {
	q := url.Values{}
	for name, v := range map[string]string{"scope": f.Scope, "tenant": f.Tenant, "state": f.State, "prefix": f.Prefix} {
		if v != "" {
			q.Set(name, v)
		}
	}
	if f.Expired {
		q.Set("expired", "1")
	}
	if f.Values {
		q.Set("values", "1")
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// ParseFilter decodes a Filter from a query.
func ParseFilter(q url.Values) (Filter, error) {
	f := Filter{
		Scope: q.Get("scope"), Tenant: q.Get("tenant"), State: q.Get("state"), Prefix: q.Get("prefix"),
		Expired: q.Get("expired") == "1", Values: q.Get("values") == "1",
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return Filter{}, errors.New("limit: want a whole number")
		}
		f.Limit = n
	}
	return f, nil
}
