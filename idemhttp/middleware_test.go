package idemhttp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
)

// fixture is a store, a scope and a counting handler behind the middleware.
type fixture struct {
	t     *testing.T
	st    *idem.Store
	runs  atomic.Int32
	h     http.Handler
	inner http.HandlerFunc
}

func newFixture(t *testing.T, so idem.ScopeOptions, opts Options, inner http.HandlerFunc) *fixture {
	t.Helper()
	st, err := idem.Open(idem.Options{InMemory: true, GCInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	sc, err := st.Scope("http", so)
	require.NoError(t, err)
	if opts.Tenant == nil && !opts.Global {
		opts.Tenant = func(r *http.Request) (string, error) {
			user := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if user == "" {
				return "", errors.New("no user")
			}
			return user, nil
		}
	}
	f := &fixture{t: t, st: st}
	if inner == nil {
		inner = func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Location", "/orders/1")
			w.Header().Set("Set-Cookie", "session=secret")
			w.Header().Set("X-Request-Id", fmt.Sprint("req-", f.runs.Load()))
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"run":%d,"echo":%q}`, f.runs.Load(), body)
		}
	}
	f.inner = func(w http.ResponseWriter, r *http.Request) { f.runs.Add(1); inner(w, r) }
	mw, err := New(sc, opts)
	require.NoError(t, err)
	f.h = mw(f.inner)
	return f
}

func request(method, body, key, user string) *http.Request {
	r := httptest.NewRequest(method, "/orders?b=2&a=1", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if key != "" {
		r.Header.Set("Idempotency-Key", key)
	}
	if user != "" {
		r.Header.Set("Authorization", "Bearer "+user)
	}
	return r
}

func (f *fixture) do(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, r)
	return rec
}

func problemType(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	assert.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	var p problem
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p), rec.Body.String())
	assert.Equal(t, rec.Code, p.Status)
	return strings.TrimPrefix(p.Type, DefaultProblemBase)
}

func TestFirstRequestRunsAndRetriesReplay(t *testing.T) {
	f := newFixture(t, idem.ScopeOptions{}, Options{}, nil)
	first := f.do(request("POST", `{"item":"tea"}`, `"k1"`, "alice"))
	require.Equal(t, http.StatusCreated, first.Code)
	assert.Empty(t, first.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, "session=secret", first.Header().Get("Set-Cookie"), "the live response is untouched")

	again := f.do(request("POST", `{"item":"tea"}`, "k1", "alice")) // a bare token is the same key
	require.Equal(t, http.StatusCreated, again.Code)
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, first.Body.String(), again.Body.String())
	assert.Equal(t, "application/json", again.Header().Get("Content-Type"))
	assert.Equal(t, "/orders/1", again.Header().Get("Location"))
	assert.Equal(t, "req-1", again.Header().Get("X-Request-Id"))
	assert.Empty(t, again.Header().Get("Set-Cookie"), "cookies are never replayed")
	assert.Equal(t, fmt.Sprint(first.Body.Len()), again.Header().Get("Content-Length"))
	assert.Equal(t, int32(1), f.runs.Load())
}

func TestDecodeResponseShowsWhatARetryIsSent(t *testing.T) {
	f := newFixture(t, idem.ScopeOptions{MaxValueSize: 4096}, Options{}, nil)
	first := f.do(request("POST", `{"item":"tea"}`, "k1", "alice"))
	require.Equal(t, http.StatusCreated, first.Code)
	rec, err := f.st.Lookup(context.Background(), "http", "alice", "k1")
	require.NoError(t, err)
	got, err := DecodeResponse(rec.Value)
	require.NoError(t, err)
	assert.True(t, got.Replayable)
	assert.Equal(t, http.StatusCreated, got.Status)
	assert.Equal(t, "/orders/1", got.Header.Get("Location"))
	assert.Empty(t, got.Header.Get("Set-Cookie"), "never stored")
	assert.Equal(t, first.Body.String(), string(got.Body))

	big := newFixture(t, idem.ScopeOptions{MaxValueSize: 4096}, Options{}, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(make([]byte, 5000))
	})
	big.do(request("POST", `{}`, "k2", "alice"))
	rec, err = big.st.Lookup(context.Background(), "http", "alice", "k2")
	require.NoError(t, err)
	got, err = DecodeResponse(rec.Value)
	require.NoError(t, err)
	assert.False(t, got.Replayable, "too large to keep")
	assert.Equal(t, http.StatusAccepted, got.Status)
	assert.Empty(t, got.Header)
	assert.Empty(t, got.Body)

	_, err = DecodeResponse([]byte(`{"charge":1}`))
	assert.Error(t, err, "another application's value")
}

func TestReplayKeepsHeadersOuterMiddlewareSet(t *testing.T) {
	f := newFixture(t, idem.ScopeOptions{}, Options{}, nil)
	outer := func(id string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Request-Id", id)
			w.Header().Set("Access-Control-Allow-Origin", "https://"+id+".example")
			f.h.ServeHTTP(w, r)
		})
	}
	serve := func(id string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		outer(id).ServeHTTP(rec, request("POST", `{}`, "k", "alice"))
		return rec
	}
	first := serve("first")
	require.Equal(t, http.StatusCreated, first.Code)
	again := serve("second")
	require.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, "second", again.Header().Get("X-Request-Id"), "this request's own id, not the stored one")
	assert.Equal(t, "https://second.example", again.Header().Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "/orders/1", again.Header().Get("Location"), "stored headers fill in the rest")
	assert.Equal(t, first.Body.String(), again.Body.String())
}

func TestStatusTable(t *testing.T) {
	f := newFixture(t, idem.ScopeOptions{}, Options{MaxRequestBody: 16}, nil)
	require.Equal(t, http.StatusCreated, f.do(request("POST", `{}`, "used", "alice")).Code)

	twoLines := request("POST", `{}`, "a", "alice")
	twoLines.Header.Add("Idempotency-Key", "b")
	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
		kind   string
	}{
		{"missing key", request("POST", `{}`, "", "alice"), 400, ProblemKeyMissing},
		{"two header lines", twoLines, 400, ProblemKeyInvalid},
		{"list value", request("POST", `{}`, `"a", "b"`, "alice"), 400, ProblemKeyInvalid},
		{"space in a bare key", request("POST", `{}`, `a b`, "alice"), 400, ProblemKeyInvalid},
		{"too long", request("POST", `{}`, strings.Repeat("k", 256), "alice"), 400, ProblemKeyInvalid},
		{"no caller", request("POST", `{}`, "k", ""), 401, ProblemTenantUnknown},
		{"body too large", request("POST", strings.Repeat("x", 17), "k", "alice"), 413, ProblemRequestTooLarge},
		{"other payload", request("POST", `{"x":1}`, "used", "alice"), 422, ProblemKeyReused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := f.do(tc.req)
			assert.Equal(t, tc.status, rec.Code, rec.Body.String())
			assert.Equal(t, tc.kind, problemType(t, rec))
		})
	}
	assert.Equal(t, int32(1), f.runs.Load(), "no refused request reached the handler")

	other := httptest.NewRequest("PATCH", "/elsewhere", strings.NewReader(`{}`))
	other.Header.Set("Idempotency-Key", "used")
	other.Header.Set("Authorization", "Bearer alice")
	assert.Equal(t, 422, f.do(other).Code, "a key reused on another endpoint mismatches")

	get := request("GET", "", "", "alice")
	assert.Equal(t, http.StatusCreated, f.do(get).Code, "GET is not idempotency-checked")
}

func TestOptionalKey(t *testing.T) {
	f := newFixture(t, idem.ScopeOptions{}, Options{Optional: true}, nil)
	assert.Equal(t, http.StatusCreated, f.do(request("POST", `{}`, "", "alice")).Code)
	assert.Equal(t, http.StatusCreated, f.do(request("POST", `{}`, "", "alice")).Code)
	assert.Equal(t, int32(2), f.runs.Load(), "without a key, nothing is shared")
}

func TestTenantIsolation(t *testing.T) {
	f := newFixture(t, idem.ScopeOptions{}, Options{}, nil)
	a := f.do(request("POST", `{"item":"a"}`, "same", "alice"))
	b := f.do(request("POST", `{"item":"b"}`, "same", "bob"))
	assert.Equal(t, http.StatusCreated, a.Code)
	assert.Equal(t, http.StatusCreated, b.Code, "another caller's key is not a conflict")
	assert.Empty(t, b.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, int32(2), f.runs.Load())
}

func TestInProgressAnswers409OrWaits(t *testing.T) {
	for _, wait := range []time.Duration{0, 10 * time.Second} {
		t.Run(fmt.Sprint("wait=", wait), func(t *testing.T) {
			started, release := make(chan struct{}), make(chan struct{})
			f := newFixture(t, idem.ScopeOptions{}, Options{Wait: wait}, func(w http.ResponseWriter, r *http.Request) {
				close(started)
				<-release
				w.WriteHeader(http.StatusAccepted)
				_, _ = io.WriteString(w, "done")
			})
			first := make(chan *httptest.ResponseRecorder)
			go func() { first <- f.do(request("POST", `{}`, "k", "alice")) }()
			<-started

			mismatch := f.do(request("POST", `{"other":1}`, "k", "alice"))
			assert.Equal(t, 422, mismatch.Code, "a mismatch is reported before in-progress")

			second := make(chan *httptest.ResponseRecorder)
			go func() { second <- f.do(request("POST", `{}`, "k", "alice")) }()
			if wait == 0 {
				rec := <-second
				assert.Equal(t, http.StatusConflict, rec.Code)
				assert.Equal(t, ProblemInProgress, problemType(t, rec))
				assert.Equal(t, "1", rec.Header().Get("Retry-After"))
				close(release)
			} else {
				time.Sleep(20 * time.Millisecond) // let it start waiting
				close(release)
				rec := <-second
				assert.Equal(t, http.StatusAccepted, rec.Code, "the waiter gets the first response")
				assert.Equal(t, "done", rec.Body.String())
				assert.Equal(t, "true", rec.Header().Get("Idempotent-Replayed"))
			}
			assert.Equal(t, http.StatusAccepted, (<-first).Code)
			assert.Equal(t, int32(1), f.runs.Load())
		})
	}
}

func TestWaitIsBounded(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	f := newFixture(t, idem.ScopeOptions{}, Options{Wait: 30 * time.Millisecond}, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	})
	go f.do(request("POST", `{}`, "k", "alice"))
	<-started
	rec := f.do(request("POST", `{}`, "k", "alice"))
	assert.Equal(t, http.StatusConflict, rec.Code)
	assert.Equal(t, ProblemInProgress, problemType(t, rec))
}

func TestPersistPolicy(t *testing.T) {
	for _, tc := range []struct {
		status int
		all    bool
		stored bool
	}{
		{200, false, true}, {302, false, true}, {404, false, true}, {400, false, true},
		{408, false, false}, {425, false, false}, {429, false, false},
		{500, false, false}, {503, false, false}, {500, true, true},
	} {
		t.Run(fmt.Sprintf("%d all=%v", tc.status, tc.all), func(t *testing.T) {
			f := newFixture(t, idem.ScopeOptions{}, Options{PersistAll: tc.all}, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
			})
			f.do(request("POST", `{}`, "k", "alice"))
			rec := f.do(request("POST", `{}`, "k", "alice"))
			assert.Equal(t, tc.status, rec.Code)
			if tc.stored {
				assert.Equal(t, int32(1), f.runs.Load())
				assert.Equal(t, "true", rec.Header().Get("Idempotent-Replayed"))
			} else {
				assert.Equal(t, int32(2), f.runs.Load(), "released: the retry runs again")
			}
		})
	}
}

func TestPanicReleasesAndPropagates(t *testing.T) {
	for _, wait := range []time.Duration{0, time.Second} {
		calls := 0
		f := newFixture(t, idem.ScopeOptions{}, Options{Wait: wait}, func(w http.ResponseWriter, r *http.Request) {
			calls++
			if calls == 1 {
				panic(http.ErrAbortHandler)
			}
			w.WriteHeader(http.StatusCreated)
		})
		assert.PanicsWithValue(t, http.ErrAbortHandler, func() { f.do(request("POST", `{}`, "k", "alice")) })
		assert.Equal(t, http.StatusCreated, f.do(request("POST", `{}`, "k", "alice")).Code)
		assert.Equal(t, 2, calls)
	}
}

func TestHandlerThatWritesNothingIsAnImplicit200(t *testing.T) {
	f := newFixture(t, idem.ScopeOptions{}, Options{}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Note", "empty")
	})
	first := f.do(request("POST", `{}`, "k", "alice"))
	again := f.do(request("POST", `{}`, "k", "alice"))
	assert.Equal(t, 200, first.Code)
	assert.Equal(t, 200, again.Code)
	assert.Equal(t, "empty", again.Header().Get("X-Note"))
	assert.Equal(t, "0", again.Header().Get("Content-Length"))
	assert.Equal(t, int32(1), f.runs.Load())
}

func TestHeadersAreSnapshotAtWriteHeader(t *testing.T) {
	f := newFixture(t, idem.ScopeOptions{}, Options{DropHeaders: []string{"x-request-id"}}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Before", "sent")
		w.Header().Set("X-Request-Id", "abc")
		w.Header().Add("Link", "</a>; rel=a")
		w.Header().Add("Link", "</b>; rel=b")
		w.WriteHeader(http.StatusOK)
		w.Header().Set("X-After", "never sent")
	})
	f.do(request("POST", `{}`, "k", "alice"))
	again := f.do(request("POST", `{}`, "k", "alice"))
	assert.Equal(t, "sent", again.Header().Get("X-Before"))
	assert.Empty(t, again.Header().Get("X-After"))
	assert.Empty(t, again.Header().Get("X-Request-Id"), "dropped by option")
	assert.Equal(t, []string{"</a>; rel=a", "</b>; rel=b"}, again.Header().Values("Link"), "values verbatim, in order")
}

func TestUnreplayableResponsesAreTombstones(t *testing.T) {
	for name, inner := range map[string]http.HandlerFunc{
		"flushed": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "data: 1\n\n")
			require.NoError(t, http.NewResponseController(w).Flush())
		},
		"oversized": func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(make([]byte, 5000))
		},
		"declared trailer": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Checksum")
			_, _ = io.WriteString(w, "body")
			w.Header().Set("X-Checksum", "abc")
		},
		"trailer prefix": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "body")
			w.Header().Set(http.TrailerPrefix+"X-Checksum", "abc")
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, idem.ScopeOptions{MaxValueSize: 4096}, Options{}, inner)
			first := f.do(request("POST", `{}`, "k", "alice"))
			assert.Equal(t, 200, first.Code)
			assert.NotEmpty(t, first.Body.String(), "the live response goes through")
			again := f.do(request("POST", `{}`, "k", "alice"))
			assert.Equal(t, http.StatusConflict, again.Code)
			assert.Equal(t, ProblemResponseUnavailable, problemType(t, again))
			assert.Empty(t, again.Header().Get("Retry-After"), "terminal")
			assert.Equal(t, int32(1), f.runs.Load(), "never a second execution")
		})
	}
}

func TestHijackedResponseIsNotReplayed(t *testing.T) {
	f := newFixture(t, idem.ScopeOptions{}, Options{}, func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if !assert.NoError(t, err) {
			return
		}
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
		_ = buf.Flush()
		_ = conn.Close()
	})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	post := func() *http.Response {
		req, _ := http.NewRequest("POST", srv.URL+"/ws", strings.NewReader(`{}`))
		req.Header.Set("Idempotency-Key", "k")
		req.Header.Set("Authorization", "Bearer alice")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	resp := post()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "hi", string(body))
	resp = post()
	resp.Body.Close()
	assert.Equal(t, http.StatusConflict, resp.StatusCode)
	assert.Equal(t, int32(1), f.runs.Load())
}

// TestClientDisconnectKeepsTheOutcome: a client that goes away while the
// handler works does not cut the handler short (its context is not
// cancelled), and the retry gets the outcome.
func TestClientDisconnectKeepsTheOutcome(t *testing.T) {
	started, gone := make(chan struct{}), make(chan struct{})
	var ctxErr error
	f := newFixture(t, idem.ScopeOptions{}, Options{}, func(w http.ResponseWriter, r *http.Request) {
		close(started) // a second run would panic here
		<-gone         // the client went away while we worked
		ctxErr = r.Context().Err()
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "created anyway")
	})
	ctx, cancel := context.WithCancel(context.Background())
	req := request("POST", `{}`, "k", "alice").WithContext(ctx)
	done := make(chan struct{})
	go func() { f.do(req); close(done) }()
	<-started
	cancel()
	close(gone)
	<-done
	assert.NoError(t, ctxErr, "the handler runs to its end")
	again := f.do(request("POST", `{}`, "k", "alice"))
	assert.Equal(t, http.StatusCreated, again.Code)
	assert.Equal(t, "created anyway", again.Body.String())
}

func TestStoreFailureFailsClosed(t *testing.T) {
	f := newFixture(t, idem.ScopeOptions{}, Options{}, nil)
	require.NoError(t, f.st.Close())
	rec := f.do(request("POST", `{}`, "k", "alice"))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, ProblemStoreUnavailable, problemType(t, rec))
	assert.Zero(t, f.runs.Load())
}

func TestOutcomeUnknown(t *testing.T) {
	dir := t.TempDir()
	st, err := idem.Open(idem.Options{Dir: dir})
	require.NoError(t, err)
	sc, err := st.Scope("http", idem.ScopeOptions{Orphans: idem.OrphanReport})
	require.NoError(t, err)
	mw, err := New(sc, Options{Global: true})
	require.NoError(t, err)
	started := make(chan struct{})
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { close(started); select {} }))
	go h.ServeHTTP(httptest.NewRecorder(), request("POST", `{}`, "k", ""))
	<-started
	require.NoError(t, st.Close()) // as a crash would, the claim stays behind

	st, err = idem.Open(idem.Options{Dir: dir})
	require.NoError(t, err)
	defer st.Close()
	sc, err = st.Scope("http", idem.ScopeOptions{Orphans: idem.OrphanReport})
	require.NoError(t, err)
	mw, err = New(sc, Options{Global: true})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	mw(http.NotFoundHandler()).ServeHTTP(rec, request("POST", `{}`, "k", ""))
	assert.Equal(t, http.StatusConflict, rec.Code)
	var p problem
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	assert.Equal(t, DefaultProblemBase+ProblemOutcomeUnknown, p.Type)
}

func TestConcurrentDuplicatesOverHTTP(t *testing.T) {
	f := newFixture(t, idem.ScopeOptions{}, Options{Wait: 10 * time.Second}, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "one")
	})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(`{}`))
			req.Header.Set("Idempotency-Key", "k")
			req.Header.Set("Authorization", "Bearer alice")
			resp, err := http.DefaultClient.Do(req)
			if assert.NoError(t, err) {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.Equal(t, http.StatusCreated, resp.StatusCode)
				assert.Equal(t, "one", string(body))
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(1), f.runs.Load())
}

func TestNewValidatesOptions(t *testing.T) {
	st, err := idem.Open(idem.Options{InMemory: true})
	require.NoError(t, err)
	defer st.Close()
	sc, _ := st.Scope("s", idem.ScopeOptions{})
	tenant := func(*http.Request) (string, error) { return "t", nil }
	for name, o := range map[string]Options{
		"no tenant":     {},
		"both":          {Tenant: tenant, Global: true},
		"negative body": {Global: true, MaxRequestBody: -1},
		"negative wait": {Global: true, Wait: -1},
	} {
		_, err := New(sc, o)
		assert.Error(t, err, name)
	}
	_, err = New(nil, Options{Global: true})
	assert.Error(t, err)
}

// hijackRecorder is a ResponseRecorder that can be hijacked.
type hijackRecorder struct{ *httptest.ResponseRecorder }

func (h hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	a, _ := net.Pipe()
	return a, bufio.NewReadWriter(bufio.NewReader(a), bufio.NewWriter(a)), nil
}

func TestCaptureWriterPassesThroughResponseController(t *testing.T) {
	rec := hijackRecorder{httptest.NewRecorder()}
	cw := &captureWriter{w: rec, limit: 10}
	rc := http.NewResponseController(cw)
	assert.Equal(t, http.ResponseWriter(rec), cw.Unwrap())
	conn, _, err := rc.Hijack()
	require.NoError(t, err)
	conn.Close()
	assert.True(t, cw.streamed)
	assert.Equal(t, kindUnavailable, cw.result().kind)
}

func TestNoContentReplaysWithoutBody(t *testing.T) {
	f := newFixture(t, idem.ScopeOptions{}, Options{}, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		_, _ = io.WriteString(w, "not allowed on the wire")
	})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	for range 2 {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(`{}`))
		req.Header.Set("Idempotency-Key", "k")
		req.Header.Set("Authorization", "Bearer alice")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusNoContent, resp.StatusCode)
		assert.Empty(t, body)
	}
	assert.Equal(t, int32(1), f.runs.Load())
}

// failingCompletions is a backend whose next completions fail, as a full
// disk or a broken connection would make them.
type failingCompletions struct {
	idem.Backend
	fail atomic.Int32
}

func (f *failingCompletions) Complete(ctx context.Context, key []byte, owner uint64, value []byte, ttl time.Duration) error {
	if f.fail.Add(-1) >= 0 {
		return errors.New("injected: completion failed")
	}
	return f.Backend.Complete(ctx, key, owner, value, ttl)
}

// TestFailedCompletionNeverRunsTheHandlerAgain checks, in both modes of
// the middleware, that a response whose storing failed is not followed by
// a second execution under OrphanReport: the client got the first 201,
// so a retry must hear that the outcome is unknown.
func TestFailedCompletionNeverRunsTheHandlerAgain(t *testing.T) {
	for _, wait := range []time.Duration{0, time.Second} {
		t.Run(fmt.Sprint("wait=", wait), func(t *testing.T) {
			be, err := idem.OpenBadger(idem.Options{InMemory: true})
			require.NoError(t, err)
			fb := &failingCompletions{Backend: be}
			st, err := idem.Open(idem.Options{Backend: fb, GCInterval: -1})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			sc, err := st.Scope("http", idem.ScopeOptions{Orphans: idem.OrphanReport})
			require.NoError(t, err)
			mw, err := New(sc, Options{Global: true, Wait: wait})
			require.NoError(t, err)
			var runs atomic.Int32
			h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				runs.Add(1)
				w.WriteHeader(http.StatusCreated)
			}))
			fb.fail.Store(1)
			first := httptest.NewRecorder()
			h.ServeHTTP(first, request("POST", `{}`, "k", ""))
			require.Equal(t, http.StatusCreated, first.Code, "the client gets the response it was sent")

			again := httptest.NewRecorder()
			h.ServeHTTP(again, request("POST", `{}`, "k", ""))
			assert.Equal(t, http.StatusConflict, again.Code)
			assert.Equal(t, ProblemOutcomeUnknown, problemType(t, again))
			assert.Equal(t, int32(1), runs.Load(), "the handler ran once")
		})
	}
}

func TestRetryAfterIsConfigurable(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	f := newFixture(t, idem.ScopeOptions{}, Options{RetryAfter: 2500 * time.Millisecond}, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	})
	done := make(chan struct{})
	go func() { f.do(request("POST", `{}`, "k", "alice")); close(done) }()
	<-started
	rec := f.do(request("POST", `{}`, "k", "alice"))
	close(release)
	<-done
	assert.Equal(t, http.StatusConflict, rec.Code)
	assert.Equal(t, "3", rec.Header().Get("Retry-After"), "whole seconds, rounded up")
	sc, err := f.st.Scope("http", idem.ScopeOptions{})
	require.NoError(t, err)
	_, err = New(sc, Options{Global: true, RetryAfter: -time.Second})
	assert.Error(t, err)
}

// TestBufferSendsTheResponseOnlyOnceItsOutcomeIsStored runs the handler
// with Options.Buffer: its response reaches the client once stored, and a
// response whose outcome could not be stored is never sent (503, and none
// of the handler's headers).
func TestBufferSendsTheResponseOnlyOnceItsOutcomeIsStored(t *testing.T) {
	for _, wait := range []time.Duration{0, time.Second} {
		t.Run(fmt.Sprint("wait=", wait), func(t *testing.T) {
			be, err := idem.OpenBadger(idem.Options{InMemory: true})
			require.NoError(t, err)
			fb := &failingCompletions{Backend: be}
			st, err := idem.Open(idem.Options{Backend: fb, GCInterval: -1})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			sc, err := st.Scope("http", idem.ScopeOptions{})
			require.NoError(t, err)
			mw, err := New(sc, Options{Global: true, Wait: wait, Buffer: true})
			require.NoError(t, err)
			var runs atomic.Int32
			h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				runs.Add(1)
				w.Header().Set("Location", "/orders/1")
				w.WriteHeader(http.StatusCreated)
				w.(http.Flusher).Flush()
				_, _ = io.WriteString(w, "created")
			}))
			fb.fail.Store(1)
			failed := httptest.NewRecorder()
			h.ServeHTTP(failed, request("POST", `{}`, "k", ""))
			assert.Equal(t, http.StatusServiceUnavailable, failed.Code, "the outcome was not stored: the 201 is not sent")
			assert.Empty(t, failed.Header().Get("Location"))

			first := httptest.NewRecorder()
			h.ServeHTTP(first, request("POST", `{}`, "k2", ""))
			assert.Equal(t, http.StatusCreated, first.Code)
			assert.Equal(t, "/orders/1", first.Header().Get("Location"))
			assert.Equal(t, "created", first.Body.String())
			again := httptest.NewRecorder()
			h.ServeHTTP(again, request("POST", `{}`, "k2", ""))
			assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"), "a flush in buffered mode keeps it replayable")
			assert.Equal(t, "created", again.Body.String())
		})
	}
}
