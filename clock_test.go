package idem

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem/idembadger"
)

// clockedBackend is a backend with a clock of its own (a Clock), as a
// server's: here an hour behind this machine's.
type clockedBackend struct {
	*idembadger.Backend
}

func (clockedBackend) Now(context.Context) (time.Time, error) { return time.Now().Add(-time.Hour), nil }

// TestRecordsAreDatedByTheBackendClock runs a store in a process whose own
// clock is two minutes off, on a backend that has a clock of its own: every
// record is dated by the backend's clock, so that instances whose clocks
// disagree agree on each record's life (idemredis's clock is the Redis
// server's: its TestNowFollowsTheServerClock). With Options.Now set, that
// clock rules instead.
func TestRecordsAreDatedByTheBackendClock(t *testing.T) {
	ctx := testCtx(t)
	for _, skew := range []time.Duration{2 * time.Minute, -2 * time.Minute} {
		b, err := idembadger.Open(idembadger.Options{InMemory: true})
		require.NoError(t, err)
		st, err := OpenWithProcessClock(Options{Backend: clockedBackend{b}}, func() time.Time { return time.Now().Add(skew) })
		require.NoError(t, err)
		sc := scopeTest(t, st, "s", ScopeOptions{TTL: time.Minute})
		res, err := sc.Do(ctx, "k", nil, value(new(int), "v"))
		require.NoError(t, err)
		assert.WithinDuration(t, time.Now().Add(-time.Hour), res.CreatedAt, 5*time.Second, "skew %v: dated by the backend's clock", skew)
		assert.Equal(t, time.Minute, res.ExpiresAt.Sub(res.CreatedAt))
		again, err := sc.Do(ctx, "k", nil, value(new(int), "again"))
		require.NoError(t, err)
		assert.True(t, again.Replayed, "skew %v: judged alive by the same clock", skew)
		require.NoError(t, st.Close())
	}

	b, err := idembadger.Open(idembadger.Options{InMemory: true})
	require.NoError(t, err)
	fixed := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	st := openTest(t, Options{Backend: clockedBackend{b}, Now: func() time.Time { return fixed }})
	res, err := scopeTest(t, st, "s", ScopeOptions{}).Do(ctx, "k", nil, value(new(int), "v"))
	require.NoError(t, err)
	assert.Equal(t, fixed, res.CreatedAt.UTC(), "Options.Now rules when it is set")
}
