package idem_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemredis"
	"github.com/idemkit/idem/internal/redistest"
)

// TestInstanceClockSkewKeepsRecordLives runs two instances on one Redis,
// one of them on a machine whose clock is two minutes off, with a
// one-minute TTL: each replays what the other stored, and every record is
// dated by the server's clock, whichever instance wrote it.
func TestInstanceClockSkewKeepsRecordLives(t *testing.T) {
	for _, skew := range []time.Duration{2 * time.Minute, -2 * time.Minute} {
		t.Run(fmt.Sprint("skew=", skew), func(t *testing.T) {
			ctx := context.Background()
			rdb := redistest.Client(t)
			prefix := redistest.Prefix(t, rdb)
			open := func(wall func() time.Time) *idem.Scope {
				be, err := idemredis.New(rdb, idemredis.Options{Prefix: prefix})
				require.NoError(t, err)
				st, err := idem.OpenWithProcessClock(idem.Options{Backend: be, CacheBytes: -1}, wall)
				require.NoError(t, err)
				t.Cleanup(func() { _ = st.Close() })
				sc, err := st.Scope("s", idem.ScopeOptions{TTL: time.Minute})
				require.NoError(t, err)
				return sc
			}
			right := open(time.Now)
			off := open(func() time.Time { return time.Now().Add(skew) })
			runs := 0
			fn := func(context.Context) ([]byte, error) { runs++; return []byte("v"), nil }
			for _, tc := range []struct {
				name          string
				first, second *idem.Scope
			}{{"right-then-off", right, off}, {"off-then-right", off, right}} {
				first, err := tc.first.Do(ctx, tc.name, nil, fn)
				require.NoError(t, err)
				again, err := tc.second.Do(ctx, tc.name, nil, fn)
				require.NoError(t, err)
				assert.True(t, again.Replayed, "%s: the record lives on the other instance", tc.name)
				server, err := rdb.Time(ctx).Result()
				require.NoError(t, err)
				assert.WithinDuration(t, server, first.CreatedAt, 5*time.Second, "%s: dated by the server's clock", tc.name)
				assert.Equal(t, time.Minute, first.ExpiresAt.Sub(first.CreatedAt), tc.name)
			}
			assert.Equal(t, 2, runs, "each key ran once")
		})
	}
}
