package serverclock

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// server is a clock a minute ahead of this machine's, read over a "network"
// that takes up to a millisecond each way.
func server(ctx context.Context) (int64, error) {
	time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
	us := time.Now().Add(time.Minute).UnixMicro()
	time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
	return us, ctx.Err()
}

// The estimate of the server's clock is never early, and late by about a
// round trip.
func TestEstimateIsNeverEarly(t *testing.T) {
	var c Clock
	_, _, ok := c.Estimate()
	require.False(t, ok, "no reading yet")
	var worst time.Duration
	for i := range 200 {
		before := time.Now().Add(time.Minute).UnixMicro() // the server's time now
		est, _, ok := c.Estimate()
		if i > 0 {
			require.True(t, ok)
			require.GreaterOrEqual(t, est, before, "reading %d: the estimate is early", i)
			worst = max(worst, time.Duration(est-before)*time.Microsecond)
		}
		sent := time.Now()
		us, err := server(context.Background())
		require.NoError(t, err)
		c.Observe(sent, us)
		if i%50 == 0 {
			time.Sleep(20 * time.Millisecond) // readings of some age too
		}
	}
	t.Logf("latest estimate at most %v after the server's time", worst)
	assert.Less(t, worst, 100*time.Millisecond)
}

func TestEstimateGoesStale(t *testing.T) {
	var c Clock
	c.Observe(time.Now().Add(-Fresh-time.Millisecond), 1e15)
	_, _, ok := c.Estimate()
	assert.False(t, ok)
	c.Observe(time.Now(), 2e15)
	us, _, ok := c.Estimate()
	assert.True(t, ok)
	assert.GreaterOrEqual(t, us, int64(2e15))
}

// Now reads the server once when it has no fresh reading, and otherwise
// estimates without asking.
func TestNowReadsWhenStale(t *testing.T) {
	reads := 0
	c := Clock{Read: func(ctx context.Context) (int64, error) { reads++; return server(ctx) }}
	for range 100 {
		now, err := c.Now(context.Background())
		require.NoError(t, err)
		assert.WithinDuration(t, time.Now().Add(time.Minute), now, 50*time.Millisecond)
	}
	assert.Equal(t, 1, reads, "one reading serves a hundred calls")
}
