package idemredis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemredis/redistest"
)

func newTestBackend(t *testing.T) *Backend {
	rdb := redistest.Client(t)
	be, err := New(rdb, Options{Prefix: redistest.Prefix(t, rdb)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = be.Close() })
	return be
}

var claimReq = idem.ClaimRequest{Value: []byte("v"), Lease: time.Second, TTL: time.Minute}

// Once the server's clock is known, claims run without a script: their
// owners are random, their tokens the server's time.
func TestClaimsGoQuickOnceTheClockIsKnown(t *testing.T) {
	be := newTestBackend(t)
	ctx := context.Background()
	first, err := be.Claim(ctx, []byte("a"), claimReq)
	require.NoError(t, err)
	assert.Equal(t, first.Owner, first.Token, "the first claim is a script's: its owner is its token")

	next, err := be.Claim(ctx, []byte("b"), claimReq)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, next.Owner, uint64(minQuickOwner), "a quick claim's owner is random")
	assert.Greater(t, next.Token, first.Token)
	e, found, err := be.Get(ctx, []byte("b"))
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, idem.Entry{Value: []byte("v"), Owner: next.Owner}, e)
	require.NoError(t, be.Complete(ctx, []byte("b"), next.Owner, []byte("done"), time.Minute))

	dup, err := be.Claim(ctx, []byte("b"), claimReq)
	require.NoError(t, err)
	assert.Zero(t, dup.Owner)
	assert.Equal(t, idem.Entry{Value: []byte("done")}, dup.Prev, "a duplicate sees the result")
}

// A quick claim whose token would come after the end of its lease (the
// clock estimate was off by more than the lease) is undone and made by the
// script instead.
func TestQuickClaimSlowerThanItsLeaseFallsBack(t *testing.T) {
	be := newTestBackend(t)
	ctx := context.Background()
	now, err := be.rdb.Time(ctx).Result()
	require.NoError(t, err)
	be.clock.Observe(time.Now(), now.Add(-time.Minute).UnixMicro()) // a minute early

	res, err := be.Claim(ctx, []byte("k"), claimReq)
	require.NoError(t, err)
	require.NotZero(t, res.Owner)
	assert.Equal(t, res.Owner, res.Token, "claimed by the script")
	e, found, err := be.Get(ctx, []byte("k"))
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, idem.Entry{Value: []byte("v"), Owner: res.Owner}, e, "the script's claim stands, live")
}
