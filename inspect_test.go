package idem

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	assert.Equal(t, "completed", rs[0].State)
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
		st.AdminHandler(AdminOptions{AllowMutations: tc.allow}).ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, nil))
		assert.Equal(t, tc.want, rec.Code, "%s %s allow=%v: %s", tc.method, tc.target, tc.allow, rec.Body)
		if rec.Code >= 400 && rec.Code != http.StatusMethodNotAllowed {
			assert.Contains(t, rec.Body.String(), `"error"`)
		}
	}
}
