package idemhttp

import (
	"context"
	"net/http"

	"github.com/idemkit/idem"
)

// Info is what the middleware knows of a request: its key, its tenant,
// and how it was answered. The handler behind the middleware reads it
// with [InfoFrom]; an access log in front of it sees it too, outcome
// included, when it has called [Track] first. Logging the key is the
// caller's choice: the middleware itself logs only a hash of it.
type Info struct {
	Key    string
	Tenant string // empty with Options.Global
	// Outcome is how the request was answered: executed (the handler
	// ran), replayed, mismatch (422), in_progress (409), outcome_unknown,
	// invalid (a refused key, body or caller), error (the store failed).
	// It is set once the middleware has decided, before the handler runs
	// for an executed request.
	Outcome idem.Outcome
}

type infoKey struct{}

// InfoFrom returns the Info of the request whose context is ctx, or
// false if the middleware did not handle it (another method, or no key
// under Options.Optional).
func InfoFrom(ctx context.Context) (*Info, bool) {
	info, ok := ctx.Value(infoKey{}).(*Info)
	return info, ok && info.Outcome != ""
}

// Track returns r with an empty Info in its context, which the middleware
// fills in as it handles r: call it in an access log (or any middleware
// in front of idemhttp) and read the Info once the handler chain has
// returned.
//
//	r, info := idemhttp.Track(r)
//	next.ServeHTTP(w, r)
//	log.Info("request", "path", r.URL.Path, "idempotency", info.Outcome)
func Track(r *http.Request) (*http.Request, *Info) {
	info := &Info{}
	return r.WithContext(context.WithValue(r.Context(), infoKey{}, info)), info
}

// setOutcome records how r was answered in its Info, if it has one.
func setOutcome(r *http.Request, o idem.Outcome) {
	if info, ok := r.Context().Value(infoKey{}).(*Info); ok {
		info.Outcome = o
	}
}
