package idem

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The recent clock reads the wall clock when it starts, keeps up while it
// is read, rests when it is not, and after stop reads the wall clock every
// time.
func TestRecentClockTicksWhileRead(t *testing.T) {
	var wall atomic.Int64
	c := newRecentClock(func() time.Time { return time.Unix(0, wall.Load()) })
	defer c.stop()

	wall.Store(100)
	assert.Equal(t, int64(100), c.Now(), "a resting clock reads the wall clock")
	require.True(t, c.ticking.Load())
	wall.Store(200)
	assert.Eventually(t, func() bool { return c.Now() == 200 }, 5*time.Second, 100*time.Microsecond, "a read clock keeps up")

	assert.Eventually(t, func() bool { return !c.ticking.Load() }, 5*time.Second, time.Millisecond, "an unread clock rests")
	wall.Store(300)
	assert.Equal(t, int64(300), c.Now(), "and reads the wall clock when read again")

	c.stop()
	for _, now := range []int64{400, 500} {
		wall.Store(now)
		assert.Equal(t, now, c.Now(), "a stopped clock reads the wall clock every time")
	}
	assert.False(t, c.ticking.Load())
}

// A cached record is not replayed once its TTL has passed by more than the
// recent clock's lag: the key runs again.
func TestCachedRecordExpiresWithTheProcessClock(t *testing.T) {
	st := openTest(t, Options{InMemory: true, GCInterval: -1})
	const ttl = 20 * time.Millisecond
	sc := scopeTest(t, st, "s", ScopeOptions{TTL: ttl})
	ctx := context.Background()
	runs := 0
	fn := func(context.Context) ([]byte, error) { runs++; return []byte("v"), nil }
	for range 3 { // the second call reads the record and caches it; the third replays from the cache
		_, err := sc.Do(ctx, "k", nil, fn)
		require.NoError(t, err)
	}
	require.Equal(t, 1, runs)
	time.Sleep(ttl + 50*time.Millisecond)
	res, err := sc.Do(ctx, "k", nil, fn)
	require.NoError(t, err)
	assert.False(t, res.Replayed, "an expired record is not replayed from the cache")
	assert.Equal(t, 2, runs)
}
