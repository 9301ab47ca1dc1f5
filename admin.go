package idem

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/idemkit/idem/internal/adminapi"
)

// AdminOptions configures [Store.AdminHandler].
type AdminOptions struct {
	// AllowMutations enables POST /gc and POST /delete. Off by default:
	// the handler is read-only.
	AllowMutations bool

	// Hosts are the host names, besides the listener's own address (and
	// "localhost" on a loopback listener), that requests may name in
	// their Host header. Any other Host is refused, so that a web page on
	// a name that resolves to this address (DNS rebinding) cannot read
	// the store.
	Hosts []string

	// Token, if not empty, is required of every request as
	// "Authorization: Bearer <Token>" (the idem CLI sends its -token, or
	// $IDEM_ADMIN_TOKEN).
	Token string

	// Metrics, if set, is served at GET /metrics behind the same guards:
	// the handler of a metrics library (promhttp.HandlerFor an idemprom
	// registry, say), so that one private address serves both.
	Metrics http.Handler
}

// AdminHandler returns an HTTP handler for operators (the idem CLI's -url
// flag talks to it), to mount on a private address of the process that
// owns the store, since no other process can open it while it runs. It
// never shows more than the records' metadata unless asked for values.
//
//	GET  /stats                          Stats as JSON
//	GET  /records?scope=&tenant=&state=&prefix=&expired=1&limit=&values=1
//	                                     RecordInfo as JSON lines, streamed
//	GET  /record?scope=&tenant=&key=     one RecordInfo, with its value
//	POST /gc                             run a collection; GCStats as JSON
//	POST /delete?scope=&tenant=&key=     delete one record
//	GET  /metrics                        AdminOptions.Metrics, when set
//
// Errors are JSON objects {"error": "..."} with a 4xx or 5xx status.
//
// The handler is for tools, never for browsers: it refuses a request
// whose Host is not its listener's (see AdminOptions.Hosts), a request a
// browser sends on behalf of another site (Sec-Fetch-Site, Origin), a
// mutation without the header Idem-Admin: mutate (which no page can send
// without a preflight the handler never grants), and, with
// AdminOptions.Token, a request without that bearer token. A response
// whose client stops reading is cut off after adminWriteTimeout.
func (s *Store) AdminHandler(opts AdminOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adminapi.PathStats, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("GET "+adminapi.PathRecords, func(w http.ResponseWriter, r *http.Request) {
		wf, err := adminapi.ParseFilter(r.URL.Query())
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		var state RecordState
		if wf.State != "" {
			if state, err = ParseRecordState(wf.State); err != nil {
				writeError(w, http.StatusBadRequest, err)
				return
			}
		}
		f := RecordFilter{
			Scope: wf.Scope, Tenant: wf.Tenant, State: state, KeyPrefix: wf.Prefix,
			Expired: wf.Expired, Limit: wf.Limit, Values: wf.Values,
		}
		w.Header().Set("Content-Type", "application/jsonl")
		enc := json.NewEncoder(w)
		// A client that stops reading is cut off: it must not hold a
		// listing open forever.
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Now().Add(adminWriteTimeout))
		defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
		n := 0
		err = s.Records(r.Context(), f, func(info RecordInfo) error {
			if err := enc.Encode(info); err != nil {
				return err
			}
			if n++; n%256 == 0 {
				_ = rc.Flush()
				_ = rc.SetWriteDeadline(time.Now().Add(adminWriteTimeout))
			}
			return nil
		})
		if err != nil && n == 0 {
			writeError(w, statusOf(err), err)
		}
	})
	mux.HandleFunc("GET "+adminapi.PathRecord, func(w http.ResponseWriter, r *http.Request) {
		k := adminapi.ParseKey(r.URL.Query())
		info, err := s.Lookup(r.Context(), k.Scope, k.Tenant, k.Key)
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, info)
	})
	// mutation guards a handler that changes the store.
	mutation := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			switch {
			case !opts.AllowMutations:
				writeError(w, http.StatusForbidden, errMutationsOff)
			case r.Header.Get(adminapi.MutationHeader) != adminapi.MutationValue:
				writeError(w, http.StatusForbidden, errMutationHeader)
			default:
				h(w, r)
			}
		}
	}
	mux.HandleFunc("POST "+adminapi.PathGC, mutation(func(w http.ResponseWriter, r *http.Request) {
		stats, err := s.GC(r.Context())
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, stats)
	}))
	mux.HandleFunc("POST "+adminapi.PathDelete, mutation(func(w http.ResponseWriter, r *http.Request) {
		k := adminapi.ParseKey(r.URL.Query())
		if err := s.Delete(r.Context(), k.Scope, k.Tenant, k.Key); err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	return adminGuard(opts, mux)
}

// adminWriteTimeout is how long a listing waits for its client to take
// more of it.
const adminWriteTimeout = 30 * time.Second

var (
	errMutationsOff   = errors.New("idem: this admin endpoint is read-only (AdminOptions.AllowMutations)")
	errMutationHeader = errors.New("idem: a mutation needs the header " + adminapi.MutationHeader + ": " + adminapi.MutationValue)
	errAdminHost      = errors.New("idem: admin request for another host (AdminOptions.Hosts)")
	errCrossSite      = errors.New("idem: admin request from a browser on another site")
	errAdminToken     = errors.New("idem: admin request without the right bearer token (AdminOptions.Token)")
)

// adminGuard refuses what AdminHandler's doc says it refuses before next
// sees the request.
func adminGuard(opts AdminOptions, next http.Handler) http.Handler {
	hosts := make(map[string]bool, len(opts.Hosts))
	for _, h := range opts.Hosts {
		hosts[strings.ToLower(h)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(adminapi.ProtocolHeader, adminapi.ProtocolVersion)
		switch {
		case opts.Token != "" && !bearer(r, opts.Token):
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeError(w, http.StatusUnauthorized, errAdminToken)
		case !hostAllowed(r, hosts):
			writeError(w, http.StatusMisdirectedRequest, errAdminHost)
		case crossSite(r):
			writeError(w, http.StatusForbidden, errCrossSite)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// bearer reports whether r carries the bearer token.
func bearer(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// hostAllowed reports whether r's Host names the address it came in on
// (or localhost, on a loopback address), or one of hosts.
func hostAllowed(r *http.Request, hosts map[string]bool) bool {
	name := strings.ToLower(hostOnly(r.Host))
	if hosts[name] {
		return true
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	ip := hostOnly(local.String())
	if name == strings.ToLower(ip) {
		return true
	}
	addr, err := netip.ParseAddr(ip)
	return err == nil && addr.IsLoopback() && name == "localhost"
}

// hostOnly strips the port, and an IPv6 address's brackets, from a
// host[:port].
func hostOnly(hostport string) string {
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		return host
	}
	return strings.Trim(hostport, "[]")
}

// crossSite reports whether a browser sent r on behalf of another origin.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

// statusOf maps the store's errors to HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalidKey), errors.Is(err, ErrInvalidScope):
		return http.StatusBadRequest
	case errors.Is(err, ErrInProgress):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
