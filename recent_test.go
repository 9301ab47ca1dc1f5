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

// A hit reads no clock; a lagging recent clock cannot replay a record past
// its deadline, since within recentSlack of it the clock itself decides;
// and a record that near its deadline but live is still replayed from the
// cache, for a clock read.
func TestCachedRecordExpiresOnTimeWhileTheRecentClockLags(t *testing.T) {
	const lag = 500 * time.Millisecond
	require.Greater(t, recentSlack, lag)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var wall atomic.Int64
	var wallReads atomic.Int64
	wall.Store(start.UnixNano())
	st, err := open(Options{InMemory: true, GCInterval: -1}, func() time.Time {
		wallReads.Add(1)
		return time.Unix(0, wall.Load())
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	be := &countingBackend{Backend: st.be}
	st.be = be
	// A clock that never ticks: it says what the test sets, however late.
	lagging := newRecentClock(st.recent.wall)
	lagging.ticking.Store(true)
	st.recent.stop()
	st.recent = lagging
	set := func(now time.Duration) {
		wall.Store(start.Add(now).UnixNano())
		lagging.now.Store(start.Add(now - lag).UnixNano())
	}

	const ttl = time.Hour
	sc := scopeTest(t, st, "s", ScopeOptions{TTL: ttl})
	ctx := context.Background()
	runs := 0
	fn := func(context.Context) ([]byte, error) { runs++; return []byte("v"), nil }
	for range 2 { // the second call reads the record and caches it
		_, err := sc.Do(ctx, "k", nil, fn)
		require.NoError(t, err)
	}
	lookups := be.gets.Load()

	set(time.Minute)
	reads := wallReads.Load()
	res, err := sc.Do(ctx, "k", nil, fn)
	require.NoError(t, err)
	assert.True(t, res.Replayed)
	assert.Equal(t, reads, wallReads.Load(), "a hit far from the deadline reads no clock")

	set(ttl - recentSlack/4) // live, but nearer its deadline than the slack
	reads = wallReads.Load()
	res, err = sc.Do(ctx, "k", nil, fn)
	require.NoError(t, err)
	assert.True(t, res.Replayed)
	assert.Equal(t, reads+1, wallReads.Load(), "near its deadline, a hit reads the clock")
	assert.Equal(t, lookups, be.gets.Load(), "and is served from the cache all the same")

	set(ttl + time.Millisecond) // expired by the clock; the recent clock says live
	res, err = sc.Do(ctx, "k", nil, fn)
	require.NoError(t, err)
	assert.False(t, res.Replayed, "an expired record is not replayed from the cache")
	assert.Equal(t, 2, runs)
}
