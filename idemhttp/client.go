package idemhttp

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idemkit/idem/internal/retry"
)

// Transport is the client half: an http.RoundTripper that gives each
// request of its Methods one Idempotency-Key and retries it with that
// same key, so that a request whose answer was lost (a timeout, a dropped
// connection) is retried without running twice on the server. The zero
// value is ready to use.
//
// A request is retried, up to MaxAttempts attempts in all and never past
// its context, after:
//
//   - an error of the round trip (the connection failed or was dropped,
//     or AttemptTimeout passed): the server may or may not have acted, and
//     the key makes the retry safe either way;
//   - 409 with problem type idempotency-in-progress (the first attempt
//     still runs on the server), and 429, 502, 503 and 504, after the
//     answer's Retry-After when it gives one.
//
// Every other answer is returned as it is: 400, 413 and 422 (a retry
// would get the same), and a 409 of another problem type (the outcome is
// unknown or not replayable: retrying cannot help). Between attempts it
// waits a random time up to BaseDelay doubled per retry, at most MaxDelay
// ("full jitter"). The final response's Idempotent-Replayed header says
// whether it was replayed (see [Replayed]).
type Transport struct {
	// Base makes each attempt. Nil means http.DefaultTransport.
	Base http.RoundTripper
	// Methods are the methods given a key and retried; the others pass
	// through untouched, once. Nil means POST and PATCH.
	Methods []string
	// Header is the request header for the key. Empty means
	// Idempotency-Key.
	Header string
	// NewKey makes a request's key when the caller set none. Nil means a
	// random UUID (version 4, from crypto/rand), as an sf-string.
	NewKey func() string

	// MaxAttempts bounds the attempts of one request, the first included.
	// Zero means 5; 1 means no retries.
	MaxAttempts int
	// AttemptTimeout bounds each attempt's wait for the response headers:
	// an answer slower than that is given up and retried. Zero means no
	// bound but the request's context.
	AttemptTimeout time.Duration
	// BaseDelay is the longest wait before the first retry; it doubles
	// with each retry. Zero means 100 ms.
	BaseDelay time.Duration
	// MaxDelay caps the wait before a retry, Retry-After included: an
	// answer that asks for a longer wait is returned instead. Zero means
	// 10 s.
	MaxDelay time.Duration
	// MaxBufferedBody is how much of a body without GetBody is kept so
	// that it can be sent again; a longer body is sent once and its request
	// is not retried. Zero means 1 MiB.
	MaxBufferedBody int64

	// OnRetry, if set, is told of each retry before its wait: the attempt
	// that failed (1 for the first), its response or error, and the wait.
	OnRetry func(attempt int, resp *http.Response, err error, wait time.Duration)
}

// NewClient returns an http.Client whose requests go through t (nil
// means a zero Transport).
func NewClient(t *Transport) *http.Client {
	if t == nil {
		t = &Transport{}
	}
	return &http.Client{Transport: t}
}

// CloseIdleConnections closes the idle connections of Base, when it keeps
// any (http.Client.CloseIdleConnections reaches Base through it).
func (t *Transport) CloseIdleConnections() {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if c, ok := base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Replayed reports whether resp is a replay of an earlier execution's
// response (its Idempotent-Replayed header).
func Replayed(resp *http.Response) bool {
	return resp != nil && resp.Header.Get("Idempotent-Replayed") == "true"
}

// ErrBodyNotReplayable is returned (wrapped) when a request must be retried but its
// body, longer than MaxBufferedBody and without GetBody, cannot be sent
// again.
var ErrBodyNotReplayable = errors.New("idemhttp: the request body cannot be sent again (set GetBody, or raise MaxBufferedBody)")

// RoundTrip sends req, and retries it as the Transport's documentation
// says. It does not modify req.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	methods := t.Methods
	if methods == nil {
		methods = defaultMethods
	}
	if !slices.Contains(methods, req.Method) {
		return base.RoundTrip(req)
	}
	header := t.Header
	if header == "" {
		header = "Idempotency-Key"
	}
	ctx := req.Context()
	req = req.Clone(ctx)
	if req.Header.Get(header) == "" {
		newKey := t.NewKey
		if newKey == nil {
			newKey = func() string { return `"` + retry.UUIDv4() + `"` }
		}
		req.Header.Set(header, newKey())
	}
	body, err := t.rewindable(req)
	if err != nil {
		return nil, err
	}
	maxAttempts := retry.Or(t.MaxAttempts, 5)
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			if req.Body, err = body(); err != nil {
				return nil, err
			}
		}
		resp, err := t.attempt(base, req)
		again, retryAfter := retryable(resp, err)
		if !again || attempt == maxAttempts || ctx.Err() != nil {
			return resp, err
		}
		if body == nil { // a body that cannot be sent again
			if resp != nil {
				return resp, nil
			}
			return nil, fmt.Errorf("%w: %w", ErrBodyNotReplayable, err)
		}
		wait, ok := retry.Wait(ctx, attempt, retry.Or(t.BaseDelay, 100*time.Millisecond), retry.Or(t.MaxDelay, 10*time.Second), retryAfter)
		if !ok {
			return resp, err // no time to wait: the caller gets this answer
		}
		if t.OnRetry != nil {
			t.OnRetry(attempt, resp, err, wait)
		}
		if resp != nil {
			_, _ = io.CopyN(io.Discard, resp.Body, 64<<10) // lets the connection be reused
			_ = resp.Body.Close()
		}
		if err := retry.Sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

var defaultMethods = []string{http.MethodPost, http.MethodPatch}

// rewindable returns the function that gives req's body again for a
// retry, or nil if it cannot (the body is longer than MaxBufferedBody and
// has no GetBody); a request without a body gets a function that gives
// none.
func (t *Transport) rewindable(req *http.Request) (func() (io.ReadCloser, error), error) {
	switch {
	case req.Body == nil || req.Body == http.NoBody:
		return func() (io.ReadCloser, error) { return http.NoBody, nil }, nil
	case req.GetBody != nil:
		return req.GetBody, nil
	}
	limit := retry.Or(t.MaxBufferedBody, 1<<20)
	head, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		_ = req.Body.Close()
		return nil, fmt.Errorf("idemhttp: reading the request body: %w", err)
	}
	if int64(len(head)) > limit {
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), req.Body), req.Body}
		return nil, nil
	}
	_ = req.Body.Close()
	again := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(head)), nil }
	req.Body, _ = again()
	req.GetBody = again
	return again, nil
}

// attempt makes one attempt, bounded by AttemptTimeout until the
// response headers arrive (the body is read under the request's own
// context).
func (t *Transport) attempt(base http.RoundTripper, req *http.Request) (*http.Response, error) {
	if t.AttemptTimeout <= 0 {
		return base.RoundTrip(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(t.AttemptTimeout, func() { cancel(errAttemptTimeout) })
	resp, err := base.RoundTrip(req.WithContext(ctx))
	if !timer.Stop() || err != nil {
		cancel(nil)
		if resp != nil {
			_ = resp.Body.Close()
		}
		if err == nil || context.Cause(ctx) == errAttemptTimeout {
			err = fmt.Errorf("idemhttp: %w (%v)", errAttemptTimeout, t.AttemptTimeout)
		}
		return nil, err
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		cancel(nil) // nothing left to read under the attempt's context
		return resp, nil
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
	return resp, nil
}

var errAttemptTimeout = errors.New("no response within AttemptTimeout")

// cancelOnClose ends an attempt's context once its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// retryable says whether an attempt's outcome is worth a retry with the
// same key, and how long its answer asks to wait.
func retryable(resp *http.Response, err error) (bool, time.Duration) {
	if err != nil {
		var cert *tls.CertificateVerificationError
		if errors.As(err, &cert) || errors.Is(err, context.Canceled) {
			return false, 0
		}
		return true, 0
	}
	switch resp.StatusCode {
	case http.StatusConflict:
		if problemKind(resp) != ProblemInProgress {
			return false, 0 // outcome unknown, not replayable: terminal
		}
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
	default:
		return false, 0
	}
	return true, retryAfter(resp.Header.Get("Retry-After"))
}

// problemKind is the last path segment of a problem+json answer's type
// ("idempotency-in-progress"), whatever the server's ProblemBase. It
// peeks at the body and leaves it readable.
func problemKind(resp *http.Response) string {
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mediaType != "application/problem+json" {
		return ""
	}
	head, err := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	if err != nil {
		return ""
	}
	var p struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(head, &p) != nil {
		return ""
	}
	return p.Type[strings.LastIndexByte(p.Type, '/')+1:]
}

// maxRetryAfter bounds a parsed Retry-After: far beyond any MaxDelay, and
// far from overflowing a Duration.
const maxRetryAfter = 1000 * time.Hour

// retryAfter parses a Retry-After value: seconds, or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
		return time.Duration(min(s, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(time.Until(at), 0)
	}
	return 0
}
