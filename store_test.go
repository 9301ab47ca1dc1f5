package idem

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpenOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no dir":             {},
		"dir and in-memory":  {Dir: t.TempDir(), InMemory: true},
		"shards not power 2": {InMemory: true, Shards: 3},
		"negative shards":    {InMemory: true, Shards: -4},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Open(o)
			assert.ErrorIs(t, err, ErrInvalidOptions)
		})
	}
}

func TestReopenKeepsResultsAndStartsNewEpoch(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	st, err := Open(Options{Dir: dir})
	require.NoError(t, err)
	first := st.Epoch()
	sc := scopeTest(t, st, "s", ScopeOptions{})
	runs := 0
	_, err = sc.Tenant("t").Do(ctx, "k", []byte("fp"), value(&runs, "persisted"))
	require.NoError(t, err)
	require.NoError(t, st.Close())

	st = openTest(t, Options{Dir: dir})
	assert.Equal(t, first+1, st.Epoch())
	sc = scopeTest(t, st, "s", ScopeOptions{})
	res, err := sc.Tenant("t").Do(ctx, "k", []byte("fp"), value(&runs, "again"))
	require.NoError(t, err)
	assert.True(t, res.Replayed)
	assert.Equal(t, "persisted", string(res.Value))
	assert.Equal(t, 1, runs)
	_, err = sc.Tenant("t").Do(ctx, "k", []byte("other"), value(&runs, "again"))
	assert.ErrorIs(t, err, ErrFingerprintMismatch, "the fingerprint survives too")
}

// TestOrphanPolicies leaves a claim unfinished when the store closes, as a
// crash would, and reopens (the real SIGKILL is in crash_test.go).
func TestOrphanPolicies(t *testing.T) {
	ctx := testCtx(t)
	clock := newFakeClock()
	dir := t.TempDir()
	st, err := Open(Options{Dir: dir, Now: clock.Now})
	require.NoError(t, err)
	report := scopeTest(t, st, "report", ScopeOptions{Orphans: OrphanReport, OrphanTTL: time.Hour})
	rerun := scopeTest(t, st, "rerun", ScopeOptions{})
	for _, sc := range []*Scope{report, rerun} {
		cl, err := sc.Claim(ctx, "k", []byte("fp"))
		require.NoError(t, err)
		require.True(t, cl.Owned())
	}
	require.NoError(t, st.Close())

	st = openTest(t, Options{Dir: dir, Now: clock.Now})
	report = scopeTest(t, st, "report", ScopeOptions{Orphans: OrphanReport, OrphanTTL: time.Hour})
	rerun = scopeTest(t, st, "rerun", ScopeOptions{})
	runs := 0
	_, err = report.Do(ctx, "k", []byte("fp"), value(&runs, "v"))
	assert.ErrorIs(t, err, ErrOutcomeUnknown)
	_, err = report.Claim(ctx, "k", []byte("fp"))
	assert.ErrorIs(t, err, ErrOutcomeUnknown)
	_, err = report.Do(ctx, "k", []byte("other"), value(&runs, "v"))
	assert.ErrorIs(t, err, ErrFingerprintMismatch, "a mismatch is still a mismatch")
	assert.Zero(t, runs)

	res, err := rerun.Do(ctx, "k", []byte("fp"), value(&runs, "v"))
	require.NoError(t, err)
	assert.False(t, res.Replayed)
	assert.Equal(t, 1, runs)
	assert.Equal(t, uint64(3), st.Stats().Orphans, "three lookups met the report orphan; rerun left none on disk")

	clock.Advance(time.Hour) // OrphanTTL
	res, err = report.Do(ctx, "k", []byte("fp"), value(&runs, "v"))
	require.NoError(t, err)
	assert.False(t, res.Replayed)
	assert.Equal(t, 2, runs)
}

func TestOrphanReportReleaseDeletesClaim(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	st, err := Open(Options{Dir: dir})
	require.NoError(t, err)
	sc := scopeTest(t, st, "s", ScopeOptions{Orphans: OrphanReport})
	cl, err := sc.Claim(ctx, "k", nil)
	require.NoError(t, err)
	require.NoError(t, cl.Release(ctx))
	require.NoError(t, st.Close())

	st = openTest(t, Options{Dir: dir})
	sc = scopeTest(t, st, "s", ScopeOptions{Orphans: OrphanReport})
	runs := 0
	_, err = sc.Do(ctx, "k", nil, value(&runs, "v"))
	require.NoError(t, err, "a released claim leaves no orphan")
	assert.Equal(t, 1, runs)
}

func TestCloseSemantics(t *testing.T) {
	ctx := testCtx(t)
	st, err := Open(Options{Dir: t.TempDir()})
	require.NoError(t, err)
	sc := scopeTest(t, st, "s", ScopeOptions{})
	cl, err := sc.Claim(ctx, "held", nil)
	require.NoError(t, err)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- st.Close() })
	}
	wg.Wait()
	close(errs)
	var nils int
	for err := range errs {
		if err == nil {
			nils++
		} else {
			assert.ErrorIs(t, err, ErrClosed)
		}
	}
	assert.Equal(t, 1, nils, "exactly one Close closes")

	_, err = sc.Do(ctx, "k", nil, value(new(int), "v"))
	assert.ErrorIs(t, err, ErrClosed)
	_, err = sc.Claim(ctx, "k", nil)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = st.Scope("other", ScopeOptions{})
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, cl.Complete(ctx, []byte("v")), ErrClosed, "an outcome cannot be stored after Close")
	assert.ErrorIs(t, cl.Release(ctx), ErrClosed, "the backend is gone")
	assert.Zero(t, st.Stats().InFlight, "but the claim ends in the process")
	assert.ErrorIs(t, st.Close(), ErrClosed)
}

func TestDoAfterCloseReportsClosedToRunningCall(t *testing.T) {
	ctx := testCtx(t)
	st, err := Open(Options{InMemory: true})
	require.NoError(t, err)
	sc := scopeTest(t, st, "s", ScopeOptions{})
	_, err = sc.Do(ctx, "k", nil, func(context.Context) ([]byte, error) {
		require.NoError(t, st.Close())
		return []byte("v"), nil
	})
	assert.ErrorIs(t, err, ErrClosed)
	assert.Zero(t, st.Stats().InFlight)
}

func TestSecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	openTest(t, Options{Dir: dir})
	_, err := Open(Options{Dir: dir})
	assert.ErrorIs(t, err, ErrLocked)
	assert.ErrorContains(t, err, dir)
}

func TestLogsGoToLogger(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := Open(Options{Dir: t.TempDir(), Logger: logger})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	assert.Contains(t, buf.String(), "component=badger", "badger's own logs are routed")
	assert.Contains(t, buf.String(), "store opened")
}

func TestSyncWritesStore(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	st, err := Open(Options{Dir: dir, SyncWrites: true})
	require.NoError(t, err)
	sc := scopeTest(t, st, "s", ScopeOptions{Orphans: OrphanReport})
	_, err = sc.Do(ctx, "k", nil, value(new(int), "durable"))
	require.NoError(t, err)
	require.NoError(t, st.Close())
	st = openTest(t, Options{Dir: dir, SyncWrites: true})
	res, err := scopeTest(t, st, "s", ScopeOptions{Orphans: OrphanReport}).Do(ctx, "k", nil, value(new(int), "x"))
	require.NoError(t, err)
	assert.Equal(t, "durable", string(res.Value))
}
