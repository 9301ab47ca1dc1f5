package idemhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemhttp"
	"github.com/idemkit/idem/internal/retry/retrytest"
)

// orderBook is a POST /orders service behind the idemhttp middleware: it
// creates an order per execution, keyed by the "ref" of the request that
// asked for it, so a second execution for one logical request shows.
type orderBook struct {
	mu     sync.Mutex
	byRef  map[string][]string // ref → the ids of the orders it made
	nextID int
}

func newOrderServer(t *testing.T) (*orderBook, *httptest.Server) {
	t.Helper()
	st, err := idem.Open(idem.Options{InMemory: true, GCInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	sc, err := st.Scope("orders", idem.ScopeOptions{})
	require.NoError(t, err)
	mw, err := idemhttp.New(sc, idemhttp.Options{Global: true})
	require.NoError(t, err)
	book := &orderBook{byRef: map[string][]string{}}
	srv := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Ref string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Ref == "" {
			http.Error(w, "bad order", http.StatusBadRequest)
			return
		}
		book.mu.Lock()
		book.nextID++
		id := fmt.Sprintf("ord-%d", book.nextID)
		book.byRef[req.Ref] = append(book.byRef[req.Ref], id)
		book.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%q}`, id)
	})))
	t.Cleanup(srv.Close)
	return book, srv
}

// faultyProxy forwards each request to the server and waits for its whole
// answer (the server has acted), and then, at random, drops the
// connection instead of answering, or answers only after a delay longer
// than the client waits.
type faultyProxy struct {
	dropped, delayed atomic.Int32
}

func (p *faultyProxy) start(t *testing.T, upstream string, seed uint64, delay time.Duration) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, _ := http.NewRequestWithContext(context.WithoutCancel(r.Context()), r.Method, upstream+r.URL.Path, r.Body)
		out.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		mu.Lock()
		fate := rng.IntN(10)
		mu.Unlock()
		switch {
		case fate < 3: // the answer is lost on the way back
			p.dropped.Add(1)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		case fate < 5: // the answer comes after the client gave up
			p.delayed.Add(1)
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func orderID(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var o struct{ ID string }
	err := json.NewDecoder(resp.Body).Decode(&o)
	return o.ID, err
}

// TestTransportOverAFaultyNetworkCreatesEachOrderOnce sends orders to the
// real middleware through a proxy that loses a third of the answers after
// the server acted and delays a fifth past the client's patience: with
// the Transport every logical request makes exactly one order and ends
// with that order's answer. The control, a client that retries the same
// way but with a new key per attempt, makes duplicates.
func TestTransportOverAFaultyNetworkCreatesEachOrderOnce(t *testing.T) {
	const n, attemptTimeout = 60, 150 * time.Millisecond
	book, srv := newOrderServer(t)
	proxy := &faultyProxy{}
	front := proxy.start(t, srv.URL, 1, 3*attemptTimeout)
	var replays atomic.Int32
	client := idemhttp.NewClient(&idemhttp.Transport{AttemptTimeout: attemptTimeout, BaseDelay: 5 * time.Millisecond, MaxAttempts: 30})
	got := retrytest.SendAll(t, n, "ref-", func(ref string) (string, error) {
		resp, err := client.Post(front.URL+"/orders", "application/json", strings.NewReader(`{"ref":"`+ref+`"}`))
		if err != nil {
			return "", err
		}
		if idemhttp.Replayed(resp) {
			replays.Add(1)
		}
		return orderID(resp)
	})
	require.NotZero(t, proxy.dropped.Load(), "the proxy lost answers")
	require.NotZero(t, proxy.delayed.Load(), "the proxy delayed answers")
	book.mu.Lock()
	for ref, id := range got {
		assert.Equal(t, []string{id}, book.byRef[ref], "%s: one order, and the client got it", ref)
	}
	book.mu.Unlock()
	assert.NotZero(t, replays.Load(), "answers after a lost one are replays")
	t.Logf("with the Transport: %d requests, %d answers lost, %d delayed, %d ended in a replay, %d orders",
		n, proxy.dropped.Load(), proxy.delayed.Load(), replays.Load(), book.nextID)

	// The control: the same retries, a new key each time.
	book, srv = newOrderServer(t)
	proxy = &faultyProxy{}
	front = proxy.start(t, srv.URL, 1, 3*attemptTimeout)
	plain := &http.Client{Timeout: attemptTimeout}
	retrytest.SendAll(t, n, "ref-", func(ref string) (string, error) {
		for {
			req, _ := http.NewRequest(http.MethodPost, front.URL+"/orders", strings.NewReader(`{"ref":"`+ref+`"}`))
			req.Header.Set("Idempotency-Key", fmt.Sprintf(`"%d"`, rand.Int64()))
			resp, err := plain.Do(req)
			if err == nil {
				return orderID(resp)
			}
		}
	})
	duplicated := 0
	for _, ids := range book.byRef {
		if len(ids) > 1 {
			duplicated++
		}
	}
	assert.NotZero(t, duplicated, "without one key per logical request, retries make duplicates")
	t.Logf("control, a new key per attempt: %d of %d requests made more than one order (%d orders)", duplicated, n, book.nextID)
}

// recorder is a server that answers each attempt with the next of its
// answers (the last one from then on) and records the attempts.
type recorder struct {
	mu       sync.Mutex
	keys     []string
	bodies   []string
	answers  []func(w http.ResponseWriter)
	attempts int
}

func (rec *recorder) serve(t *testing.T, answers ...func(w http.ResponseWriter)) *httptest.Server {
	rec.answers = answers
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.keys = append(rec.keys, r.Header.Get("Idempotency-Key"))
		rec.bodies = append(rec.bodies, string(body))
		answer := rec.answers[min(rec.attempts, len(rec.answers)-1)]
		rec.attempts++
		rec.mu.Unlock()
		answer(w)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func status(code int, retryAfter string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
	}
}

func problem(code int, kind string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"type":"https://example.com/problems/%s","status":%d}`, kind, code)
	}
}

var created = status(http.StatusCreated, "")

var uuidV4 = regexp.MustCompile(`^"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"$`)

func fastTransport() *idemhttp.Transport {
	return &idemhttp.Transport{BaseDelay: time.Millisecond}
}

func TestTransportKeepsOneKeyPerRequest(t *testing.T) {
	rec := &recorder{}
	srv := rec.serve(t, status(503, "0"), status(502, ""), created)
	client := idemhttp.NewClient(fastTransport())
	resp, err := client.Post(srv.URL, "text/plain", strings.NewReader("pay 5"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	require.Len(t, rec.keys, 3)
	assert.Regexp(t, uuidV4, rec.keys[0])
	assert.Equal(t, []string{rec.keys[0], rec.keys[0], rec.keys[0]}, rec.keys, "one key on every attempt")
	assert.Equal(t, []string{"pay 5", "pay 5", "pay 5"}, rec.bodies, "the body sent again in full")

	rec = &recorder{}
	srv = rec.serve(t, status(503, "0"), created)
	req, _ := http.NewRequest(http.MethodPatch, srv.URL, strings.NewReader("x"))
	req.Header.Set("Idempotency-Key", `"mine-1"`)
	resp, err = client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, []string{`"mine-1"`, `"mine-1"`}, rec.keys, "the caller's key is kept")
	assert.Equal(t, `"mine-1"`, req.Header.Get("Idempotency-Key"))

	rec = &recorder{}
	srv = rec.serve(t, status(503, "0"), created)
	resp, err = client.Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "GET is not one of the Methods: sent once")
	assert.Equal(t, []string{""}, rec.keys, "and without a key")

	rec = &recorder{}
	srv = rec.serve(t, created)
	for range 2 {
		resp, err = client.Post(srv.URL, "text/plain", nil)
		require.NoError(t, err)
		resp.Body.Close()
	}
	assert.NotEqual(t, rec.keys[0], rec.keys[1], "two requests, two keys")
}

func TestTransportRetriesOnlyWhatARetryCanChange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter)
		retry  bool
	}{
		{"400", status(400, ""), false},
		{"413", problem(413, idemhttp.ProblemRequestTooLarge), false},
		{"422", problem(422, idemhttp.ProblemKeyReused), false},
		{"409 outcome unknown", problem(409, idemhttp.ProblemOutcomeUnknown), false},
		{"409 not replayable", problem(409, idemhttp.ProblemResponseUnavailable), false},
		{"409 without a problem", status(409, "0"), false},
		{"500", status(500, ""), false},
		{"409 in progress", problem(409, idemhttp.ProblemInProgress), true},
		{"429", status(429, "0"), true},
		{"502", status(502, ""), true},
		{"503", problem(503, idemhttp.ProblemStoreUnavailable), true},
		{"504", status(504, ""), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			srv := rec.serve(t, tc.answer, created)
			resp, err := idemhttp.NewClient(fastTransport()).Post(srv.URL, "text/plain", strings.NewReader("x"))
			require.NoError(t, err)
			defer resp.Body.Close()
			if tc.retry {
				assert.Equal(t, http.StatusCreated, resp.StatusCode)
				assert.Equal(t, 2, rec.attempts)
			} else {
				assert.NotEqual(t, http.StatusCreated, resp.StatusCode)
				assert.Equal(t, 1, rec.attempts)
				body, _ := io.ReadAll(resp.Body)
				if strings.Contains(tc.name, "409 o") || strings.Contains(tc.name, "not replayable") {
					assert.Contains(t, string(body), `"status":409`, "the problem body is still there to read")
				}
			}
		})
	}
}

// opaqueBody is a body without GetBody (http.NewRequest sets one only
// for bytes, strings and bytes.Buffer readers).
type opaqueBody struct{ io.Reader }

func TestTransportBodiesItCannotSendAgain(t *testing.T) {
	rec := &recorder{}
	srv := rec.serve(t, status(503, "0"), created)
	tr := fastTransport()
	tr.MaxBufferedBody = 8
	client := idemhttp.NewClient(tr)

	resp, err := client.Post(srv.URL, "text/plain", opaqueBody{strings.NewReader("12345678")})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, []string{"12345678", "12345678"}, rec.bodies, "a short body is kept and sent again")

	rec = &recorder{}
	srv = rec.serve(t, status(503, "0"), created)
	resp, err = client.Post(srv.URL, "text/plain", opaqueBody{strings.NewReader("123456789")})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a longer one is sent once: its answer is returned")
	assert.Equal(t, []string{"123456789"}, rec.bodies)

	closed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := http.NewResponseController(w).Hijack()
		_ = conn.Close()
	}))
	defer closed.Close()
	_, err = client.Post(closed.URL, "text/plain", opaqueBody{strings.NewReader("123456789")})
	assert.ErrorIs(t, err, idemhttp.ErrBodyNotReplayable)
}

func TestTransportStopsInTime(t *testing.T) {
	rec := &recorder{}
	srv := rec.serve(t, status(503, "0"))
	tr := fastTransport()
	tr.MaxAttempts = 3
	resp, err := idemhttp.NewClient(tr).Post(srv.URL, "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 3, rec.attempts, "MaxAttempts in all")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the last answer")

	rec = &recorder{}
	srv = rec.serve(t, status(503, "5")) // under MaxDelay (10 s), beyond the deadline
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, nil)
	start := time.Now()
	resp, err = idemhttp.NewClient(fastTransport()).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Less(t, time.Since(start), time.Second, "a Retry-After beyond the deadline returns the answer at once")
	assert.Equal(t, "5", resp.Header.Get("Retry-After"))

	rec = &recorder{}
	srv = rec.serve(t, status(503, "9300000000")) // would overflow a Duration
	start = time.Now()
	resp, err = idemhttp.NewClient(fastTransport()).Post(srv.URL, "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 1, rec.attempts, "an absurd Retry-After is beyond MaxDelay: the answer is returned")
	assert.Less(t, time.Since(start), time.Second)
	assert.Equal(t, 1, rec.attempts)

	rec = &recorder{}
	srv = rec.serve(t, status(503, "1"))
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, nil)
	_, err = idemhttp.NewClient(fastTransport()).Do(req)
	assert.ErrorIs(t, err, context.Canceled, "a cancelled request stops waiting")

	var retries []time.Duration
	tr = &idemhttp.Transport{BaseDelay: 10 * time.Millisecond, MaxDelay: 40 * time.Millisecond, MaxAttempts: 6,
		OnRetry: func(_ int, _ *http.Response, _ error, wait time.Duration) { retries = append(retries, wait) }}
	rec = &recorder{}
	srv = rec.serve(t, status(502, ""))
	resp, err = idemhttp.NewClient(tr).Post(srv.URL, "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Len(t, retries, 5)
	for i, wait := range retries {
		assert.LessOrEqual(t, wait, min(10*time.Millisecond<<i, 40*time.Millisecond), "full jitter under the doubling ceiling, retry %d", i+1)
	}
}

func TestTransportAttemptTimeout(t *testing.T) {
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if attempts.Add(1) == 1 {
			time.Sleep(300 * time.Millisecond) // slower than the attempt may wait
		}
		w.WriteHeader(http.StatusCreated)
		// A body read after the attempt's timeout would have passed.
		w.(http.Flusher).Flush()
		time.Sleep(150 * time.Millisecond)
		_, _ = io.WriteString(w, "done")
	}))
	defer srv.Close()
	tr := fastTransport()
	tr.AttemptTimeout = 100 * time.Millisecond
	var failed error
	tr.OnRetry = func(_ int, _ *http.Response, err error, _ time.Duration) { failed = err }
	resp, err := idemhttp.NewClient(tr).Post(srv.URL, "text/plain", nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err, "the timeout bounds the wait for headers, not the body")
	assert.Equal(t, "done", string(body))
	assert.EqualValues(t, 2, attempts.Load())
	assert.ErrorContains(t, failed, "no response within AttemptTimeout")
	assert.False(t, errors.Is(failed, context.Canceled))
}

// TestSlowHandlerRunsOnceWhileTheClientRetries: attempts that give up
// (AttemptTimeout) end the request's context on the server, but a
// claimed handler runs to its end all the same, so that its retries get
// its answer instead of running it again.
func TestSlowHandlerRunsOnceWhileTheClientRetries(t *testing.T) {
	st, err := idem.Open(idem.Options{InMemory: true, GCInterval: -1})
	require.NoError(t, err)
	defer st.Close()
	sc, err := st.Scope("orders", idem.ScopeOptions{})
	require.NoError(t, err)
	mw, err := idemhttp.New(sc, idemhttp.Options{Global: true})
	require.NoError(t, err)
	var runs atomic.Int32
	srv := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		select { // a handler that stops when its client is gone
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
			http.Error(w, "client gone", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "order 1")
	})))
	defer srv.Close()
	client := idemhttp.NewClient(&idemhttp.Transport{AttemptTimeout: 100 * time.Millisecond, BaseDelay: 20 * time.Millisecond, MaxAttempts: 20})
	resp, err := client.Post(srv.URL, "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, "order 1", string(body))
	assert.True(t, idemhttp.Replayed(resp))
	assert.EqualValues(t, 1, runs.Load(), "the handler ran once")
}
