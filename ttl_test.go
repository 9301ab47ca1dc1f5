package idem

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRetentionBeyondMaxTTLIsRefused(t *testing.T) {
	st := openTest(t, Options{InMemory: true})
	forever := time.Duration(math.MaxInt64)
	for name, o := range map[string]ScopeOptions{
		"TTL":        {TTL: forever},
		"FailureTTL": {FailureTTL: MaxTTL + 1},
		"OrphanTTL":  {OrphanTTL: forever, Orphans: OrphanReport},
	} {
		_, err := st.Scope("s", o)
		assert.ErrorIs(t, err, ErrInvalidScope, name)
	}
	_, err := Open(Options{InMemory: true, Lease: forever})
	assert.ErrorIs(t, err, ErrInvalidOptions)
}

// TestMaxTTLKeepsRecords stores outcomes with the longest retention and
// checks that they are replayed, not found expired: a deadline that
// wrapped into the past would run every call again.
func TestMaxTTLKeepsRecords(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	st := openTest(t, Options{Dir: dir})
	o := ScopeOptions{TTL: MaxTTL, FailureTTL: MaxTTL, OrphanTTL: MaxTTL, Orphans: OrphanReport}
	sc := scopeTest(t, st, "forever", o)
	runs := 0
	_, err := sc.Do(ctx, "ok", nil, value(&runs, "v"))
	require.NoError(t, err)
	_, err = sc.Do(ctx, "failed", nil, func(context.Context) ([]byte, error) {
		runs++
		return nil, Permanent(errors.New("declined"))
	})
	require.ErrorIs(t, err, ErrPermanent)
	started := make(chan struct{})
	go sc.Do(ctx, "orphan", nil, func(ctx context.Context) ([]byte, error) {
		close(started)
		select {} // its store closes under it, as a crash would
	})
	<-started
	require.NoError(t, st.Close())

	st = openTest(t, Options{Dir: dir})
	sc = scopeTest(t, st, "forever", o)
	res, err := sc.Do(ctx, "ok", nil, value(&runs, "again"))
	require.NoError(t, err)
	assert.True(t, res.Replayed)
	assert.Equal(t, "v", string(res.Value))
	assert.WithinDuration(t, time.Now().Add(MaxTTL), res.ExpiresAt, time.Minute)
	_, err = sc.Do(ctx, "failed", nil, value(&runs, "again"))
	assert.ErrorIs(t, err, ErrPermanent)
	_, err = sc.Do(ctx, "orphan", nil, value(&runs, "again"))
	assert.ErrorIs(t, err, ErrOutcomeUnknown)
	assert.Equal(t, 2, runs, "nothing ran twice")
}

func TestDeadlineNeverWraps(t *testing.T) {
	late := time.Date(2250, 1, 1, 0, 0, 0, 0, time.UTC)
	assert.Equal(t, int64(math.MaxInt64), deadline(late, MaxTTL), "saturates")
	now := time.Now()
	assert.Equal(t, now.Add(time.Hour).UnixNano(), deadline(now, time.Hour))
}

// TestEngineKeepsRecordsUntilTheStoreClockSaysSo writes records of every
// kind with a store clock frozen an hour behind the wall clock: they stay
// replayable, through collections and a reopen, until the store's clock
// reaches their deadline (Badger holds no TTL of its own for them, which
// it would count on the wall clock: idembadger's TestNoEntryHasAnEngineTTL).
func TestEngineKeepsRecordsUntilTheStoreClockSaysSo(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	clock := &fakeClock{t: time.Now().Add(-time.Hour)}
	opts := Options{Dir: dir, Now: clock.Now, GCInterval: -1, CacheBytes: -1}
	st := openTest(t, opts)
	o := ScopeOptions{TTL: time.Second, FailureTTL: time.Second, OrphanTTL: time.Second, Orphans: OrphanReport}
	sc := scopeTest(t, st, "s", o)
	runs := 0
	_, err := sc.Do(ctx, "done", nil, value(&runs, "v"))
	require.NoError(t, err)
	_, err = sc.Do(ctx, "failed", nil, func(context.Context) ([]byte, error) { return nil, Permanent(errors.New("no")) })
	require.ErrorIs(t, err, ErrPermanent)
	held, err := sc.Claim(ctx, "held", nil)
	require.NoError(t, err)

	require.NoError(t, held.Complete(ctx, []byte("late")))
	_, err = st.GC(ctx)
	require.NoError(t, err)
	require.NoError(t, st.Close())

	st = openTest(t, opts)
	sc = scopeTest(t, st, "s", o)
	for _, k := range []string{"done", "failed", "held"} {
		_, err := sc.Do(ctx, k, nil, value(&runs, "again"))
		if k == "failed" {
			assert.ErrorIs(t, err, ErrPermanent)
		} else {
			assert.NoError(t, err, k)
		}
	}
	assert.Equal(t, 1, runs, "nothing ran again: the store's clock has not moved")
	clock.Advance(time.Second)
	_, err = sc.Do(ctx, "done", nil, value(&runs, "again"))
	require.NoError(t, err)
	assert.Equal(t, 2, runs, "expired at the store's deadline")
}
