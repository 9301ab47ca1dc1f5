// Package idemhttp is net/http middleware for the Idempotency-Key header
// (IETF draft-ietf-httpapi-idempotency-key-header) on an idem store: a
// retried POST runs its handler once, and every retry gets the first
// response back, marked with Idempotent-Replayed: true.
//
// Mount it after authentication (its Tenant function names the caller) and
// inside any compression middleware (so stored bodies are identity-encoded).
// Browser clients need CORS to allow the Idempotency-Key request header and
// expose Idempotent-Replayed.
//
// # Responses
//
//	missing key (when required)              400 idempotency-key-missing
//	malformed or repeated key                400 idempotency-key-invalid
//	caller unknown (Tenant failed)           401 idempotency-tenant-unknown
//	request body over MaxRequestBody         413 idempotency-request-too-large
//	key reused with another request          422 idempotency-key-reused
//	same request still running               409 idempotency-in-progress, Retry-After
//	                                         (or, with Wait, the first response once ready)
//	stored response not replayable           409 idempotency-response-unavailable
//	owner crashed, scope uses OrphanReport   409 idempotency-outcome-unknown
//	store failure                            503 idempotency-store-unavailable
//
// The handler of a claimed request runs to its end even if its client
// goes away: its request's context keeps the values but is never
// cancelled, since the client's retry, with the same key, must get this
// run's response rather than start another run.
//
// Errors are application/problem+json (RFC 9457). Responses with status
// 2xx, 3xx and 4xx (but 408, 425 and 429) are stored and replayed; a 5xx or
// a panic releases the key, so a retry runs the handler again. A streamed
// (flushed), hijacked or oversized response is recorded as not replayable:
// retries get 409, never a second execution.
package idemhttp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/idemkit/idem"
)

// Options configures the middleware. Tenant, or Global, is required.
type Options struct {
	// Methods are the methods the middleware applies to; others pass
	// through untouched. Nil means POST and PATCH.
	Methods []string
	// Header is the request header that carries the key. Empty means
	// Idempotency-Key.
	Header string
	// Optional lets requests without a key through, without idempotency.
	// By default a key is required (400 without one).
	Optional bool

	// Tenant names the caller, from the authenticated request (a user or
	// account id, never a raw credential): two callers using the same key
	// get independent records. An error or an empty id answers 401.
	Tenant func(*http.Request) (string, error)
	// Global puts every caller in one key space, instead of Tenant. Only
	// for services with a single caller.
	Global bool

	// Fingerprint identifies the request a key was first used with. Nil
	// means [Fingerprint].
	Fingerprint func(r *http.Request, body []byte) []byte
	// MaxRequestBody caps the body read for the fingerprint. Zero means
	// 1 MiB; a larger body answers 413.
	MaxRequestBody int64
	// Persist decides which statuses are stored and replayed; the others
	// release the key. Nil means 2xx, 3xx and 4xx but 408, 425 and 429.
	Persist func(status int) bool
	// PersistAll stores every status, 5xx included (Stripe's v1 model).
	PersistAll bool
	// DropHeaders names response headers, beyond the built-in denylist
	// (cookies, credentials, hop-by-hop fields, Date, Content-Length), that
	// a replay leaves out: request ids, rate-limit counters.
	DropHeaders []string

	// Wait bounds how long a duplicate waits for the first request to
	// finish and replays its response. Zero answers 409 at once.
	Wait time.Duration
	// Buffer holds the handler's response until its outcome is stored,
	// and sends it only then: a response whose outcome cannot be stored is
	// replaced by 503 (store unavailable). It is for outcomes that commit
	// with the work, as with idempg (see its Handler): the client never
	// hears of work that did not commit. Flush does nothing then, and
	// Hijack fails. By default the response goes to the client as the
	// handler writes it.
	Buffer bool
	// RetryAfter is what the Retry-After header of a 409 in-progress or a
	// 503 answer asks the client to wait, in whole seconds (rounded up).
	// Zero means DefaultRetryAfter.
	RetryAfter time.Duration

	// ProblemBase prefixes the problem type URIs. Empty means
	// DefaultProblemBase.
	ProblemBase string
	// DocsURL, if set, is sent with errors as Link: <url>; rel="describedby".
	DocsURL string
	// Logger receives store failures, with keys hashed. Nil discards.
	Logger *slog.Logger
}

// DefaultRetryAfter is Options.RetryAfter when it is zero.
const DefaultRetryAfter = time.Second

// DefaultMaxRequestBody is the request body cap when
// Options.MaxRequestBody is zero.
const DefaultMaxRequestBody = 1 << 20

type middleware struct {
	scope *idem.Scope
	opts  Options
	drop  map[string]bool
	next  http.Handler
}

// New returns middleware that makes the requests it applies to idempotent
// on scope. The scope's TTL is how long responses are replayed, its
// MaxValueSize bounds a stored response, and its OrphanPolicy decides what
// a retry of a request whose process crashed gets.
func New(scope *idem.Scope, opts Options) (func(http.Handler) http.Handler, error) {
	switch {
	case scope == nil:
		return nil, errors.New("idemhttp: nil scope")
	case opts.Tenant == nil && !opts.Global:
		return nil, errors.New("idemhttp: Options.Tenant is required (or set Global for a single key space)")
	case opts.Tenant != nil && opts.Global:
		return nil, errors.New("idemhttp: Options.Tenant and Global exclude each other")
	case opts.MaxRequestBody < 0 || opts.Wait < 0 || opts.RetryAfter < 0:
		return nil, errors.New("idemhttp: negative MaxRequestBody, Wait or RetryAfter")
	}
	if opts.Methods == nil {
		opts.Methods = []string{http.MethodPost, http.MethodPatch}
	}
	if opts.Header == "" {
		opts.Header = "Idempotency-Key"
	}
	if opts.Fingerprint == nil {
		opts.Fingerprint = Fingerprint
	}
	if opts.MaxRequestBody == 0 {
		opts.MaxRequestBody = DefaultMaxRequestBody
	}
	if opts.Persist == nil {
		opts.Persist = DefaultPersist
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = DefaultRetryAfter
	}
	if opts.ProblemBase == "" {
		opts.ProblemBase = DefaultProblemBase
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	drop := make(map[string]bool)
	for _, h := range opts.DropHeaders {
		drop[http.CanonicalHeaderKey(h)] = true
	}
	return func(next http.Handler) http.Handler {
		return &middleware{scope: scope, opts: opts, drop: drop, next: next}
	}, nil
}

// DefaultPersist stores 2xx, 3xx and 4xx responses except 408 (Request
// Timeout), 425 (Too Early) and 429 (Too Many Requests), which say "try
// again" rather than give an answer.
func DefaultPersist(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return false
	}
	return status >= 200 && status < 500
}

// errRelease is how a handler run that must not be stored tells Do so.
var errRelease = errors.New("idemhttp: response not stored")

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !slices.Contains(m.opts.Methods, r.Method) {
		m.next.ServeHTTP(w, r)
		return
	}
	lines := r.Header.Values(m.opts.Header)
	if len(lines) == 0 && m.opts.Optional {
		m.next.ServeHTTP(w, r)
		return
	}
	// The Info goes into the request's context (a new request) only
	// where someone reads it: an access log that called Track, or the
	// handler once it runs. A replay without Track costs nothing more.
	var local Info // the Info of a request nobody tracks, until its handler runs
	info, isTracked := r.Context().Value(infoKey{}).(*Info)
	if !isTracked {
		info = &local
	}
	withInfo := func() {
		if !isTracked {
			shared := new(Info)
			*shared = local
			info = shared
			r = r.WithContext(context.WithValue(r.Context(), infoKey{}, shared))
			isTracked = true
		}
	}
	refuse := func(status int, kind, detail string) {
		info.Outcome = idem.OutcomeInvalid
		m.writeProblem(w, status, kind, detail, 0)
	}
	switch {
	case len(lines) == 0:
		refuse(http.StatusBadRequest, ProblemKeyMissing, m.opts.Header+" header is required")
		return
	case len(lines) > 1:
		refuse(http.StatusBadRequest, ProblemKeyInvalid, "exactly one "+m.opts.Header+" header line is allowed")
		return
	}
	key, err := ParseKey(lines[0])
	if err != nil {
		refuse(http.StatusBadRequest, ProblemKeyInvalid, err.Error())
		return
	}
	info.Key = key
	scope := m.scope
	if m.opts.Tenant != nil {
		tenant, err := m.opts.Tenant(r)
		if err != nil || tenant == "" {
			refuse(http.StatusUnauthorized, ProblemTenantUnknown, "")
			return
		}
		info.Tenant = tenant
		scope = scope.Tenant(tenant)
	}
	body, status, kind := m.readBody(r)
	if status != 0 {
		refuse(status, kind, "")
		return
	}
	fingerprint := m.opts.Fingerprint(r, body)

	if m.opts.Wait > 0 {
		withInfo() // the handler may run
		m.serveWaiting(w, r, scope, key, fingerprint)
		return
	}
	claim, err := scope.Claim(r.Context(), key, fingerprint)
	if err != nil {
		m.writeError(w, r, key, err)
		return
	}
	if !claim.Owned() {
		res, err := claim.Result()
		m.replay(w, r, key, res, err)
		return
	}
	withInfo()
	info.Outcome = idem.OutcomeExecuted
	out, buf := m.output(w)
	_, err = claim.Run(r.Context(), func(context.Context) ([]byte, error) {
		return m.capture(out, r) // the handler keeps the request's own context
	})
	m.ran(w, r, key, buf, err)
}

// output is where the handler writes: w, or with Options.Buffer a buffer
// (buf) that ran sends once the outcome is stored.
func (m *middleware) output(w http.ResponseWriter) (out http.ResponseWriter, buf *bufferedResponse) {
	if !m.opts.Buffer {
		return w, nil
	}
	buf = newBufferedResponse(w)
	return buf, buf
}

// ran finishes a request that ran the handler, whose outcome was recorded
// with err: it logs a failure, and sends a buffered response (or, if its
// outcome was not stored, 503 instead).
func (m *middleware) ran(w http.ResponseWriter, r *http.Request, key string, buf *bufferedResponse, err error) {
	m.logRunError(r, key, err)
	if buf == nil {
		return
	}
	if err != nil && err != errRelease {
		m.writeProblem(w, http.StatusServiceUnavailable, ProblemStoreUnavailable, "", m.retryAfter())
		return
	}
	buf.sendTo(w)
}

// readBody reads the request body, up to the cap, and puts it back for the
// handler. A non-zero status is the problem to answer with.
func (m *middleware) readBody(r *http.Request) ([]byte, int, string) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, 0, ""
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, m.opts.MaxRequestBody+1))
	_ = r.Body.Close()
	if err != nil {
		return nil, http.StatusBadRequest, ProblemRequestInvalid
	}
	if int64(len(body)) > m.opts.MaxRequestBody {
		return nil, http.StatusRequestEntityTooLarge, ProblemRequestTooLarge
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body, 0, ""
}

// logRunError logs what went wrong when the outcome of a handler that
// ran was recorded (Claim.Run): the response was sent all the same.
func (m *middleware) logRunError(r *http.Request, key string, err error) {
	if err != nil && err != errRelease {
		m.logStoreError(r, key, "store response", err)
	}
}

// capture runs the handler and returns the response to store, or
// errRelease. A panic goes through; Claim.Run releases the key.
func (m *middleware) capture(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	cw := &captureWriter{w: w, limit: m.scope.Options().MaxValueSize}
	// The handler runs to its end even if its client goes: a client that
	// gave up retries with the same key and must get this run's answer,
	// not start another run.
	m.next.ServeHTTP(cw, r.WithContext(context.WithoutCancel(r.Context())))
	res := cw.result()
	if !m.opts.PersistAll && !m.opts.Persist(res.status) {
		return nil, errRelease
	}
	enc := res.encode(m.drop)
	if len(enc) > m.scope.Options().MaxValueSize {
		enc = (&storedResponse{kind: kindUnavailable, status: res.status}).encode(nil)
	}
	return enc, nil
}

// serveWaiting serves through Do, so that a duplicate waits up to
// Options.Wait for the first request and replays its response.
func (m *middleware) serveWaiting(w http.ResponseWriter, r *http.Request, scope *idem.Scope, key string, fingerprint []byte) {
	ctx, cancel := context.WithTimeout(r.Context(), m.opts.Wait)
	defer cancel()
	ran := false
	out, buf := m.output(w)
	res, err := scope.Do(ctx, key, fingerprint, func(context.Context) ([]byte, error) {
		ran = true
		setOutcome(r, idem.OutcomeExecuted)
		return m.capture(out, r) // the handler keeps the request's own context
	})
	if ran { // this request ran the handler
		m.ran(w, r, key, buf, err)
		return
	}
	m.replay(w, r, key, res, err)
}

// replay writes a stored response, or the error a stored outcome stands
// for.
func (m *middleware) replay(w http.ResponseWriter, r *http.Request, key string, res idem.Result, err error) {
	if err != nil {
		m.writeError(w, r, key, err)
		return
	}
	stored, err := decodeResponse(res.Value)
	if err != nil {
		setOutcome(r, idem.OutcomeError)
	} else {
		setOutcome(r, idem.OutcomeReplayed) // of a response too large to keep too: the work is done
	}
	if err != nil {
		m.logStoreError(r, key, "decode response", err)
		m.writeProblem(w, http.StatusServiceUnavailable, ProblemStoreUnavailable, "", 0)
		return
	}
	if stored.kind == kindUnavailable {
		m.writeProblem(w, http.StatusConflict, ProblemResponseUnavailable,
			fmt.Sprintf("the first request completed with status %d; its response was streamed, hijacked or too large to keep", stored.status), 0)
		return
	}
	// Headers that outer middleware has already set for this request (a
	// request id, CORS) are this exchange's own: the stored ones only fill
	// in what is missing.
	h := w.Header()
	for name, values := range stored.header {
		if _, set := h[name]; !set {
			h[name] = values
		}
	}
	h["Idempotent-Replayed"] = []string{"true"}
	if bodyAllowed(stored.status) {
		h["Content-Length"] = []string{strconv.Itoa(len(stored.body))}
	}
	w.WriteHeader(stored.status)
	if bodyAllowed(stored.status) {
		_, _ = w.Write(stored.body)
	}
}

// writeError answers for an error of the store.
func (m *middleware) writeError(w http.ResponseWriter, r *http.Request, key string, err error) {
	setOutcome(r, idem.OutcomeOf(err))
	switch {
	case errors.Is(err, idem.ErrFingerprintMismatch):
		m.writeProblem(w, http.StatusUnprocessableEntity, ProblemKeyReused, "this key was first used with a different request", 0)
	case errors.Is(err, idem.ErrInProgress):
		m.writeProblem(w, http.StatusConflict, ProblemInProgress, "", m.retryAfter())
	case errors.Is(err, idem.ErrValueTooLarge):
		m.writeProblem(w, http.StatusConflict, ProblemResponseUnavailable, "the first response was too large to keep", 0)
	case errors.Is(err, idem.ErrOutcomeUnknown):
		m.writeProblem(w, http.StatusConflict, ProblemOutcomeUnknown, "the server stopped while handling the first request", 0)
	case errors.Is(err, idem.ErrInvalidKey):
		m.writeProblem(w, http.StatusBadRequest, ProblemKeyInvalid, "", 0)
	case errors.Is(err, idem.ErrInvalidScope):
		m.writeProblem(w, http.StatusUnauthorized, ProblemTenantUnknown, "", 0)
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		// Wait ran out as the first request ended: it is still someone's.
		setOutcome(r, idem.OutcomeInProgress)
		m.writeProblem(w, http.StatusConflict, ProblemInProgress, "", m.retryAfter())
	case r.Context().Err() != nil:
		// The client is gone; nothing it could read.
	default:
		m.logStoreError(r, key, "claim", err)
		m.writeProblem(w, http.StatusServiceUnavailable, ProblemStoreUnavailable, "", m.retryAfter())
	}
}

// retryAfter is Options.RetryAfter in whole seconds, rounded up.
func (m *middleware) retryAfter() int {
	return int((m.opts.RetryAfter + time.Second - 1) / time.Second)
}

// logStoreError logs a store failure; the key appears only as a hash.
func (m *middleware) logStoreError(r *http.Request, key, op string, err error) {
	sum := sha256.Sum256([]byte(key))
	m.opts.Logger.ErrorContext(r.Context(), "idemhttp: "+op+" failed",
		"key_sha256", hex.EncodeToString(sum[:8]), "method", r.Method, "path", r.URL.Path, "err", err)
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
