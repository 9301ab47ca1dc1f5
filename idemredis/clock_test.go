package idemredis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem/idemredis/redistest"
)

// The estimate of the server's clock is never early, and late by about a
// round trip.
func TestServerClockIsNeverEarly(t *testing.T) {
	rdb := redistest.Client(t)
	ctx := context.Background()
	var c serverClock
	_, _, ok := c.now()
	require.False(t, ok, "no reading yet")
	var worst time.Duration
	for i := range 200 {
		before, err := rdb.Time(ctx).Result()
		require.NoError(t, err)
		est, _, ok := c.now()
		if i > 0 {
			require.True(t, ok)
			require.GreaterOrEqual(t, est, before.UnixMicro(), "reading %d: the estimate is early", i)
			worst = max(worst, time.Duration(est-before.UnixMicro())*time.Microsecond)
		}
		sent := time.Now()
		now, err := rdb.Time(ctx).Result()
		require.NoError(t, err)
		c.observe(sent, now.UnixMicro())
		if i%50 == 0 {
			time.Sleep(20 * time.Millisecond) // readings of some age too
		}
	}
	t.Logf("latest estimate at most %v after the server's time", worst)
	assert.Less(t, worst, 100*time.Millisecond)
}

func TestServerClockGoesStale(t *testing.T) {
	var c serverClock
	c.observe(time.Now().Add(-clockFresh-time.Millisecond), 1e15)
	_, _, ok := c.now()
	assert.False(t, ok)
	c.observe(time.Now(), 2e15)
	us, _, ok := c.now()
	assert.True(t, ok)
	assert.GreaterOrEqual(t, us, int64(2e15))
}

// Now, the clock the store dates records by, follows the server's clock:
// never before it, and behind it by no more than a round trip.
func TestNowFollowsTheServerClock(t *testing.T) {
	rdb := redistest.Client(t)
	be, err := New(rdb, Options{Prefix: "unused:"})
	require.NoError(t, err)
	defer be.Close()
	ctx := context.Background()
	var worst time.Duration
	for i := range 100 {
		before, err := rdb.Time(ctx).Result()
		require.NoError(t, err)
		now, err := be.Now(ctx)
		require.NoError(t, err)
		after, err := rdb.Time(ctx).Result()
		require.NoError(t, err)
		require.False(t, now.Before(before), "reading %d: Now is early", i)
		worst = max(worst, now.Sub(after))
		if i%20 == 0 {
			time.Sleep(clockFresh * 3 / 5) // old enough readings to be refreshed
		}
	}
	t.Logf("Now at most %v after the server's time read after it", worst)
	assert.Less(t, worst, 50*time.Millisecond)
}
