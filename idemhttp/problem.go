package idemhttp

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Problem types (RFC 9457), one per way the middleware can refuse a
// request. Their URIs are ProblemBase followed by these names.
const (
	ProblemKeyMissing          = "idempotency-key-missing"
	ProblemKeyInvalid          = "idempotency-key-invalid"
	ProblemKeyReused           = "idempotency-key-reused"
	ProblemInProgress          = "idempotency-in-progress"
	ProblemResponseUnavailable = "idempotency-response-unavailable"
	ProblemOutcomeUnknown      = "idempotency-outcome-unknown"
	ProblemRequestTooLarge     = "idempotency-request-too-large"
	ProblemRequestInvalid      = "idempotency-request-invalid"
	ProblemTenantUnknown       = "idempotency-tenant-unknown"
	ProblemStoreUnavailable    = "idempotency-store-unavailable"
)

// DefaultProblemBase prefixes the problem types when Options.ProblemBase
// is empty.
const DefaultProblemBase = "https://idemkit.github.io/idem/problems/"

type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

var problemTitles = map[string]string{
	ProblemKeyMissing:          "Idempotency-Key header missing",
	ProblemKeyInvalid:          "Idempotency-Key header invalid",
	ProblemKeyReused:           "Idempotency-Key reused with a different request",
	ProblemInProgress:          "A request with this Idempotency-Key is in progress",
	ProblemResponseUnavailable: "The response to this Idempotency-Key cannot be replayed",
	ProblemOutcomeUnknown:      "The outcome of this Idempotency-Key is unknown",
	ProblemRequestTooLarge:     "Request body too large for an idempotent request",
	ProblemRequestInvalid:      "Request body could not be read",
	ProblemTenantUnknown:       "The caller could not be identified",
	ProblemStoreUnavailable:    "Idempotency store unavailable",
}

// writeProblem answers with an application/problem+json error.
func (m *middleware) writeProblem(w http.ResponseWriter, status int, kind, detail string, retryAfter int) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if m.opts.DocsURL != "" {
		h.Set("Link", "<"+m.opts.DocsURL+`>; rel="describedby"`)
	}
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{Type: m.opts.ProblemBase + kind, Title: problemTitles[kind], Status: status, Detail: detail})
}
