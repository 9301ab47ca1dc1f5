package idem

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClaimRun(t *testing.T) {
	ctx := testCtx(t)
	sc := scopeTest(t, openTest(t, Options{InMemory: true}), "s", ScopeOptions{})

	cl, err := sc.Claim(ctx, "k", nil)
	require.NoError(t, err)
	runs := 0
	res, err := cl.Run(ctx, value(&runs, "v"))
	require.NoError(t, err)
	assert.False(t, res.Replayed)
	assert.Equal(t, "v", string(res.Value))
	_, err = cl.Run(ctx, value(&runs, "again"))
	assert.ErrorIs(t, err, ErrClaimFinished, "a claim runs its work once")
	assert.Equal(t, 1, runs)

	found, err := sc.Claim(ctx, "k", nil)
	require.NoError(t, err)
	require.False(t, found.Owned())
	res, err = found.Run(ctx, value(&runs, "again"))
	require.NoError(t, err, "a claim the caller does not own gives the stored outcome")
	assert.True(t, res.Replayed)
	assert.Equal(t, "v", string(res.Value))
	assert.Equal(t, 1, runs)

	t.Run("plain error releases", func(t *testing.T) {
		cl, err := sc.Claim(ctx, "released", nil)
		require.NoError(t, err)
		_, err = cl.Run(ctx, func(context.Context) ([]byte, error) { return nil, errors.New("try later") })
		assert.EqualError(t, err, "try later")
		again, err := sc.Claim(ctx, "released", nil)
		require.NoError(t, err)
		assert.True(t, again.Owned(), "the key is free again")
		require.NoError(t, again.Release(ctx))
	})
	t.Run("panic releases and goes on", func(t *testing.T) {
		cl, err := sc.Claim(ctx, "panics", nil)
		require.NoError(t, err)
		assert.PanicsWithValue(t, "boom", func() {
			_, _ = cl.Run(ctx, func(context.Context) ([]byte, error) { panic("boom") })
		})
		again, err := sc.Claim(ctx, "panics", nil)
		require.NoError(t, err)
		assert.True(t, again.Owned())
		require.NoError(t, again.Release(ctx))
	})
	t.Run("ended claim", func(t *testing.T) {
		cl, err := sc.Claim(ctx, "ended", nil)
		require.NoError(t, err)
		require.NoError(t, cl.Release(ctx))
		_, err = cl.Run(ctx, value(&runs, "late"))
		assert.ErrorIs(t, err, ErrClaimFinished)
		assert.Equal(t, 1, runs)
	})
}

// TestSlowWorkKeepsItsClaim runs work far longer than the lease and every
// retention on the default backend: the claim lives as long as the work,
// so its result is stored and replayed, and nothing runs twice.
func TestSlowWorkKeepsItsClaim(t *testing.T) {
	ctx := testCtx(t)
	for _, policy := range []OrphanPolicy{OrphanRerun, OrphanReport} {
		t.Run(policy.String(), func(t *testing.T) {
			st := openTest(t, Options{Lease: 20 * time.Millisecond, LeaseRenewal: 10 * time.Millisecond})
			sc := scopeTest(t, st, "s", ScopeOptions{TTL: time.Hour, OrphanTTL: 50 * time.Millisecond, Orphans: policy})
			runs := 0
			res, err := sc.Do(ctx, "slow", nil, func(context.Context) ([]byte, error) {
				runs++
				time.Sleep(300 * time.Millisecond) // past the lease and the OrphanTTL
				return []byte("done"), nil
			})
			require.NoError(t, err, "a slow call keeps its claim")
			assert.False(t, res.Replayed)
			res, err = sc.Do(ctx, "slow", nil, value(&runs, "again"))
			require.NoError(t, err)
			assert.True(t, res.Replayed)
			assert.Equal(t, "done", string(res.Value))
			assert.Equal(t, 1, runs)
		})
	}
}
