package idem

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem/internal/adminapi"
)

func TestRecordsLookupDelete(t *testing.T) {
	ctx := testCtx(t)
	clock := newFakeClock()
	st := openTest(t, Options{Now: clock.Now, GCInterval: -1})
	sc := scopeTest(t, st, "s", ScopeOptions{TTL: time.Minute})
	for i := range 4 {
		_, err := sc.Tenant(fmt.Sprint("t", i%2)).Do(ctx, fmt.Sprint("k", i), []byte("fp"), value(new(int), fmt.Sprint("v", i)))
		require.NoError(t, err)
	}
	cl, err := sc.Claim(ctx, "running", nil)
	require.NoError(t, err)

	var got []RecordInfo
	collect := func(f RecordFilter) []RecordInfo {
		got = nil
		require.NoError(t, st.Records(ctx, f, func(r RecordInfo) error { got = append(got, r); return nil }))
		return got
	}
	assert.Len(t, collect(RecordFilter{}), 4, "a claim held in memory is not stored")
	assert.Len(t, collect(RecordFilter{Scope: "s", Tenant: "t1"}), 2)
	assert.Len(t, collect(RecordFilter{Scope: "s", Limit: 3}), 3)
	rs := collect(RecordFilter{Scope: "s", Tenant: "t0", KeyPrefix: "k2", Values: true})
	require.Len(t, rs, 1)
	assert.Equal(t, "v2", string(rs[0].Value))
	assert.Equal(t, StateCompleted, rs[0].State)
	assert.Equal(t, []byte("fp"), rs[0].Fingerprint)
	err = st.Records(ctx, RecordFilter{Tenant: "t0"}, func(RecordInfo) error { return nil })
	assert.ErrorIs(t, err, ErrInvalidScope)
	stop := errors.New("stop")
	assert.ErrorIs(t, st.Records(ctx, RecordFilter{}, func(RecordInfo) error { return stop }), stop)

	info, err := st.Lookup(ctx, "s", "t1", "k1")
	require.NoError(t, err)
	assert.Equal(t, "v1", string(info.Value))
	b, err := json.Marshal(info)
	require.NoError(t, err)
	var back RecordInfo
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, info.Key, back.Key)
	assert.Equal(t, info.Fingerprint, back.Fingerprint)
	assert.True(t, info.ExpiresAt.Equal(back.ExpiresAt))
	_, err = st.Lookup(ctx, "s", "", "nope")
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = st.Lookup(ctx, "BAD", "", "k")
	assert.ErrorIs(t, err, ErrInvalidScope)

	assert.ErrorIs(t, st.Delete(ctx, "s", "", "running"), ErrInProgress, "never under a running call")
	require.NoError(t, cl.Release(ctx))
	assert.ErrorIs(t, st.Delete(ctx, "s", "", "running"), ErrNotFound)
	keysBefore := st.Stats().Scopes["s"].Keys
	require.NoError(t, st.Delete(ctx, "s", "t1", "k1"))
	assert.Equal(t, keysBefore-1, st.Stats().Scopes["s"].Keys)
	runs := 0
	res, err := sc.Tenant("t1").Do(ctx, "k1", []byte("fp"), value(&runs, "fresh"))
	require.NoError(t, err)
	assert.False(t, res.Replayed)

	clock.Advance(time.Minute)
	assert.Empty(t, collect(RecordFilter{}), "expired records are hidden")
	assert.Len(t, collect(RecordFilter{Expired: true}), 4)
}

func TestReadOnlyStore(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	st, err := Open(Options{Dir: dir})
	require.NoError(t, err)
	sc := scopeTest(t, st, "s", ScopeOptions{Orphans: OrphanReport})
	_, err = sc.Do(ctx, "k", nil, value(new(int), "v"))
	require.NoError(t, err)
	epoch := st.Epoch()
	require.NoError(t, st.Close())

	ro := openTest(t, Options{Dir: dir, ReadOnly: true})
	assert.Equal(t, epoch, ro.Epoch(), "no new epoch")
	sc = scopeTest(t, ro, "s", ScopeOptions{Orphans: OrphanReport})
	_, err = sc.Do(ctx, "k", nil, value(new(int), "v"))
	assert.ErrorIs(t, err, ErrReadOnly)
	_, err = ro.GC(ctx)
	assert.ErrorIs(t, err, ErrReadOnly)
	assert.ErrorIs(t, ro.Delete(ctx, "s", "", "k"), ErrReadOnly)
	info, err := ro.Lookup(ctx, "s", "", "k")
	require.NoError(t, err)
	assert.Equal(t, "v", string(info.Value))

	_, err = Open(Options{InMemory: true, ReadOnly: true})
	assert.ErrorIs(t, err, ErrInvalidOptions)
}

func TestAdminHandler(t *testing.T) {
	ctx := testCtx(t)
	st := openTest(t, Options{GCInterval: -1})
	sc := scopeTest(t, st, "s", ScopeOptions{})
	_, err := sc.Do(ctx, "k", nil, value(new(int), "v"))
	require.NoError(t, err)
	for _, tc := range []struct {
		method, target string
		allow          bool
		want           int
	}{
		{"GET", "/stats", false, 200},
		{"GET", "/records?scope=s&limit=1", false, 200},
		{"GET", "/records?limit=-1", false, 400},
		{"GET", "/record?scope=s&key=k", false, 200},
		{"GET", "/record?scope=s&key=nope", false, 404},
		{"GET", "/record?scope=BAD&key=k", false, 400},
		{"POST", "/gc", false, 403},
		{"POST", "/delete?scope=s&key=k", false, 403},
		{"POST", "/gc", true, 200},
		{"POST", "/delete?scope=s&key=k", true, 204},
		{"POST", "/delete?scope=s&key=k", true, 404},
		{"GET", "/gc", true, 405},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(tc.method, tc.target, nil) // Host: example.com
		req.Header.Set(adminapi.MutationHeader, adminapi.MutationValue)
		st.AdminHandler(AdminOptions{AllowMutations: tc.allow, Hosts: []string{"example.com"}}).ServeHTTP(rec, req)
		assert.Equal(t, tc.want, rec.Code, "%s %s allow=%v: %s", tc.method, tc.target, tc.allow, rec.Body)
		if rec.Code >= 400 && rec.Code != http.StatusMethodNotAllowed {
			assert.Contains(t, rec.Body.String(), `"error"`)
		}
	}
}

// TestAdminHandlerRefusesBrowsersAndOtherHosts serves the admin handler
// on a real listener and sends it what a hostile web page could make a
// browser send: another Host (DNS rebinding), a cross-site request, a
// simple POST without the mutation header; none of them gets through.
func TestAdminHandlerRefusesBrowsersAndOtherHosts(t *testing.T) {
	ctx := testCtx(t)
	st := openTest(t, Options{GCInterval: -1})
	sc := scopeTest(t, st, "s", ScopeOptions{})
	_, err := sc.Do(ctx, "k", nil, value(new(int), "v"))
	require.NoError(t, err)
	srv := httptest.NewServer(st.AdminHandler(AdminOptions{AllowMutations: true, Hosts: []string{"admin.internal"}}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	send := func(method, path string, header map[string]string) int {
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader("scope=s&key=k"))
		require.NoError(t, err)
		for k, v := range header {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	mutate := map[string]string{adminapi.MutationHeader: adminapi.MutationValue}
	for _, tc := range []struct {
		name         string
		method, path string
		header       map[string]string
		want         int
	}{
		{"the listener's address", "GET", "/stats", nil, 200},
		{"localhost on a loopback listener", "GET", "/stats", map[string]string{"Host": "localhost:" + port}, 200},
		{"a configured host", "GET", "/stats", map[string]string{"Host": "admin.internal:" + port}, 200},
		{"DNS rebinding", "GET", "/records?values=1", map[string]string{"Host": "evil.example:" + port}, 421},
		{"a cross-site read", "GET", "/records?values=1", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"a simple cross-site POST", "POST", "/delete?scope=s&key=k",
			map[string]string{"Content-Type": "text/plain", "Origin": "https://evil.example"}, 403},
		{"a cross-origin POST with the header", "POST", "/delete?scope=s&key=k",
			map[string]string{adminapi.MutationHeader: adminapi.MutationValue, "Origin": "https://evil.example"}, 403},
		{"a POST without the header", "POST", "/delete?scope=s&key=k", map[string]string{"Content-Type": "text/plain"}, 403},
	} {
		assert.Equal(t, tc.want, send(tc.method, tc.path, tc.header), tc.name)
	}
	_, err = st.Lookup(ctx, "s", "", "k")
	require.NoError(t, err, "nothing was deleted")
	assert.Equal(t, 204, send("POST", "/delete?scope=s&key=k", mutate), "a tool's mutation goes through")

	locked := httptest.NewServer(st.AdminHandler(AdminOptions{Token: "s3cret"}))
	defer locked.Close()
	srv.URL = locked.URL
	assert.Equal(t, 401, send("GET", "/stats", nil), "no token")
	assert.Equal(t, 401, send("GET", "/stats", map[string]string{"Authorization": "Bearer wrong"}), "a wrong token")
	assert.Equal(t, 200, send("GET", "/stats", map[string]string{"Authorization": "Bearer s3cret"}))
}

// TestSlowAdminReaderDoesNotFreezeTheStore asks the admin handler for a
// listing far larger than the socket buffers and never reads it: Close
// must return, and calls must not queue behind it, while the handler is
// stuck writing.
func TestSlowAdminReaderDoesNotFreezeTheStore(t *testing.T) {
	ctx := testCtx(t)
	st := openTest(t, Options{InMemory: true, GCInterval: -1})
	sc := scopeTest(t, st, "s", ScopeOptions{})
	big := strings.Repeat("v", 16<<10)
	for i := range 3000 { // 48 MiB of values, 64 MiB in base64
		_, err := sc.Do(ctx, fmt.Sprint("k", i), nil, value(new(int), big))
		require.NoError(t, err)
	}
	srv := httptest.NewServer(st.AdminHandler(AdminOptions{}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.(*net.TCPConn).SetReadBuffer(4096))
	_, err = fmt.Fprintf(conn, "GET /records?values=1 HTTP/1.1\r\nHost: %s\r\n\r\n", srv.Listener.Addr())
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond) // the handler fills the socket and blocks

	did := make(chan error, 1)
	go func() {
		_, err := sc.Do(ctx, "during", nil, value(new(int), "v"))
		did <- err
	}()
	closed := make(chan error, 1)
	go func() { closed <- st.Close() }()
	select {
	case err := <-closed:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close is stuck behind a client that stopped reading")
	}
	select {
	case err := <-did:
		if err != nil {
			assert.ErrorIs(t, err, ErrClosed)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a call is stuck behind Close")
	}
}
