package idem

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/idemkit/idem/idembadger"
	"github.com/idemkit/idem/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGCDeletesExpiredAndKeepsLive(t *testing.T) {
	ctx := testCtx(t)
	clock := newFakeClock()
	st := openTest(t, Options{Now: clock.Now, GCInterval: -1})
	short := scopeTest(t, st, "short", ScopeOptions{TTL: time.Minute})
	long := scopeTest(t, st, "long", ScopeOptions{TTL: time.Hour})
	for i := range 300 {
		_, err := short.Tenant("t").Do(ctx, fmt.Sprint("k", i), nil, value(new(int), "v"))
		require.NoError(t, err)
	}
	for i := range 200 {
		_, err := long.Do(ctx, fmt.Sprint("k", i), nil, value(new(int), "v"))
		require.NoError(t, err)
	}
	assert.Equal(t, int64(300), st.Stats().Scopes["short"].Keys)

	clock.Advance(time.Minute)
	gc, err := st.GC(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(500), gc.Scanned)
	assert.Equal(t, int64(300), gc.Deleted)
	assert.Equal(t, int64(200), gc.Live)
	assert.Positive(t, gc.DeletedBytes)

	s := st.Stats()
	assert.Equal(t, int64(0), s.Scopes["short"].Keys)
	assert.Equal(t, int64(0), s.Scopes["short"].Bytes)
	assert.Equal(t, int64(200), s.Scopes["long"].Keys)
	assert.Equal(t, uint64(300), s.Reclaimed)
	assert.Equal(t, uint64(1), s.Collections)

	again, err := st.GC(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(200), again.Scanned, "deleted records are gone")
	assert.Zero(t, again.Deleted)

	runs := 0
	res, err := long.Do(ctx, "k1", nil, value(&runs, "x"))
	require.NoError(t, err)
	assert.True(t, res.Replayed, "live records survive collection")
}

func TestGCNeverDeletesAKeyClaimedAgain(t *testing.T) {
	ctx := testCtx(t)
	clock := newFakeClock()
	st := openTest(t, Options{Now: clock.Now, GCInterval: -1})
	sc := scopeTest(t, st, "s", ScopeOptions{TTL: time.Minute})
	for _, k := range []string{"held", "redone"} {
		_, err := sc.Do(ctx, k, nil, value(new(int), "old"))
		require.NoError(t, err)
	}
	clock.Advance(time.Minute)

	// "held" is claimed again while the collector runs: it is skipped.
	cl, err := sc.Claim(ctx, "held", nil)
	require.NoError(t, err)
	require.True(t, cl.Owned())
	// "redone" was seen expired by the scan, then completed anew before the
	// deletion: the re-check under ownership keeps it.
	_, err = sc.Do(ctx, "redone", nil, value(new(int), "new"))
	require.NoError(t, err)
	var stats GCStats
	require.NoError(t, st.deleteExpired([]expiredKey{{key: appendKey(nil, sc.prefix, "redone")}}, &stats))
	assert.Zero(t, stats.Deleted)

	gc, err := st.GC(ctx)
	require.NoError(t, err)
	assert.Zero(t, gc.Deleted)
	require.NoError(t, cl.Complete(ctx, []byte("new")))
	for _, k := range []string{"held", "redone"} {
		res, err := sc.Do(ctx, k, nil, value(new(int), "x"))
		require.NoError(t, err)
		assert.Equal(t, "new", string(res.Value), k)
	}
}

func TestCapsRejectAndRecoverAfterExpiry(t *testing.T) {
	ctx := testCtx(t)
	clock := newFakeClock()
	st := openTest(t, Options{Now: clock.Now, GCInterval: -1})
	keys := scopeTest(t, st, "keys", ScopeOptions{TTL: time.Minute, MaxKeys: 3})
	for i := range 3 {
		_, err := keys.Tenant(fmt.Sprint("t", i)).Do(ctx, "k", nil, value(new(int), "v"))
		require.NoError(t, err)
	}
	_, err := keys.Do(ctx, "one-more", nil, value(new(int), "v"))
	assert.ErrorIs(t, err, ErrScopeFull, "tenants share the scope's cap")
	_, err = keys.Claim(ctx, "one-more", nil)
	assert.ErrorIs(t, err, ErrScopeFull)
	res, err := keys.Tenant("t0").Do(ctx, "k", nil, value(new(int), "x"))
	require.NoError(t, err, "replays keep working at the cap")
	assert.True(t, res.Replayed)

	// A released claim gives its place back.
	small := scopeTest(t, st, "claims", ScopeOptions{MaxKeys: 1})
	cl, err := small.Claim(ctx, "a", nil)
	require.NoError(t, err)
	_, err = small.Claim(ctx, "b", nil)
	assert.ErrorIs(t, err, ErrScopeFull, "claims in progress count")
	require.NoError(t, cl.Release(ctx))
	cl, err = small.Claim(ctx, "b", nil)
	require.NoError(t, err)
	require.NoError(t, cl.Release(ctx))

	clock.Advance(time.Minute)
	_, err = st.GC(ctx)
	require.NoError(t, err)
	_, err = keys.Do(ctx, "one-more", nil, value(new(int), "v"))
	assert.NoError(t, err, "room comes back once expired records are collected")

	bytesCap := scopeTest(t, st, "bytes", ScopeOptions{MaxBytes: 1000})
	_, err = bytesCap.Do(ctx, "big", nil, value(new(int), strings.Repeat("x", 1000)))
	require.NoError(t, err, "the first record may pass the cap")
	_, err = bytesCap.Do(ctx, "next", nil, value(new(int), "v"))
	assert.ErrorIs(t, err, ErrScopeFull)
}

func TestUsageIsCountedAtOpen(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	st, err := Open(Options{Dir: dir, GCInterval: -1})
	require.NoError(t, err)
	sc := scopeTest(t, st, "s", ScopeOptions{MaxKeys: 2})
	for i := range 2 {
		_, err := sc.Do(ctx, fmt.Sprint("k", i), nil, value(new(int), "v"))
		require.NoError(t, err)
	}
	want := st.Stats().Scopes["s"]
	require.NoError(t, st.Close())

	st = openTest(t, Options{Dir: dir, GCInterval: -1})
	assert.Equal(t, want, st.Stats().Scopes["s"])
	_, err = scopeTest(t, st, "s", ScopeOptions{MaxKeys: 2}).Do(ctx, "k3", nil, value(new(int), "v"))
	assert.ErrorIs(t, err, ErrScopeFull, "caps hold across restarts")
}

func TestGCCancels(t *testing.T) {
	clock := newFakeClock()
	st := openTest(t, Options{Now: clock.Now, GCInterval: -1})
	sc := scopeTest(t, st, "s", ScopeOptions{TTL: time.Minute})
	ctx := testCtx(t)
	for i := range 3 * sweepBatch {
		_, err := sc.Do(ctx, fmt.Sprint("k", i), nil, value(new(int), "v"))
		require.NoError(t, err)
	}
	clock.Advance(time.Minute)

	ended, cancel := context.WithCancel(ctx)
	cancel()
	_, err := st.GC(ended)
	assert.ErrorIs(t, err, context.Canceled)

	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	gc, err := st.GC(short)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, gc.Deleted, int64(3*sweepBatch), "stopped part way")

	gc, err = st.GC(ctx)
	require.NoError(t, err, "and a later collection finishes the job")
	assert.Zero(t, gc.Live)
}

func TestBackgroundCollectorRunsAndStopsWithClose(t *testing.T) {
	ctx := testCtx(t)
	clock := newFakeClock()
	st, err := Open(Options{Dir: t.TempDir(), Now: clock.Now, GCInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	sc := scopeTest(t, st, "s", ScopeOptions{TTL: time.Minute})
	_, err = sc.Do(ctx, "k", nil, value(new(int), "v"))
	require.NoError(t, err)
	clock.Advance(time.Minute)
	require.Eventually(t, func() bool { return st.Stats().Reclaimed == 1 }, 10*time.Second, 5*time.Millisecond)

	require.NoError(t, st.Close())
	_, err = st.GC(ctx)
	assert.ErrorIs(t, err, ErrClosed)
	assert.Eventually(t, func() bool { return !strings.Contains(goroutines(), "idemkit/idem.(*") }, 10*time.Second, 10*time.Millisecond,
		"Close leaves none of the store's goroutines behind:\n%s", goroutines())
}

// goroutines returns the stacks of every goroutine but the caller's.
func goroutines() string {
	buf := make([]byte, 1<<20)
	all := string(buf[:runtime.Stack(buf, true)])
	_, others, _ := strings.Cut(all, "\n\n")
	return others
}

func TestGCReclaimsDisk(t *testing.T) {
	testenv.Long(t, "writes 48 MiB")
	ctx := testCtx(t)
	clock := newFakeClock()
	st := openTest(t, Options{Now: clock.Now, GCInterval: -1, CacheBytes: -1})
	sc := scopeTest(t, st, "s", ScopeOptions{TTL: time.Minute})
	big := strings.Repeat("x", 4096)
	for i := range 12_000 {
		_, err := sc.Do(ctx, fmt.Sprint("k", i), nil, value(new(int), big))
		require.NoError(t, err)
	}
	clock.Advance(time.Minute)
	// Nothing is written after the collection: its deletions reach the
	// disk without more writes to push them out of the memtable.
	stats, err := st.GC(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(12_000), stats.Deleted)
	t.Logf("disk: %d MiB before the collection, %d after it", stats.DiskBefore>>20, stats.DiskAfter>>20)
	assert.Greater(t, stats.DiskBefore, int64(40<<20))
	// What stays is the value-log file being written, which is given
	// back once it is full.
	assert.Less(t, stats.DiskAfter, int64(idembadger.ValueLogFileSize+4<<20), "the 48 MiB written are given back")
}

// A Records callback that calls the store, reading and writing, while a
// collection deletes and reclaims: the listing holds the engine shared for
// as long as it runs, so reclaiming must not wait for it, nor calls for
// reclaiming.
func TestRecordsCallbackCallsTheStoreDuringGC(t *testing.T) {
	ctx := testCtx(t)
	clock := newFakeClock()
	st := openTest(t, Options{Now: clock.Now, GCInterval: -1, CacheBytes: -1})
	short := scopeTest(t, st, "short", ScopeOptions{TTL: time.Minute})
	kept := scopeTest(t, st, "kept", ScopeOptions{TTL: time.Hour})
	for i := range 300 {
		_, err := short.Do(ctx, fmt.Sprint("k", i), nil, value(new(int), "v"))
		require.NoError(t, err)
		_, err = kept.Do(ctx, fmt.Sprint("k", i), nil, value(new(int), "v"))
		require.NoError(t, err)
	}
	clock.Advance(2 * time.Minute) // short's records expire: the collection deletes, then flushes
	gcDone := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		first := true
		done <- st.Records(ctx, RecordFilter{Scope: "kept"}, func(r RecordInfo) error {
			if first {
				first = false
				go func() { _, err := st.GC(ctx); gcDone <- err }()
				time.Sleep(300 * time.Millisecond) // the collection reaches Reclaim
			}
			if _, err := st.Lookup(ctx, r.Scope, r.Tenant, r.Key); err != nil {
				return err
			}
			_, err := kept.Do(ctx, "during-"+r.Key, nil, value(new(int), "w"))
			return err
		})
	}()
	for _, ch := range []chan error{done, gcDone} {
		select {
		case err := <-ch:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("the listing and the collection wait for each other")
		}
	}
}
