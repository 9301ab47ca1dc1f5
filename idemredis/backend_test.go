package idemredis_test

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/backend"
	"github.com/idemkit/idem/backendtest"
	"github.com/idemkit/idem/idemredis"
	"github.com/idemkit/idem/idemredis/redistest"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		child() // a process of the multi-process tests
		return
	}
	redistest.Main(m, "idemredis")
}

// newBackend returns a backend on the test server with keys of t's own.
func newBackend(t *testing.T) *idemredis.Backend {
	rdb := redistest.Client(t)
	be, err := idemredis.New(rdb, idemredis.Options{Prefix: redistest.Prefix(t, rdb)})
	require.NoError(t, err)
	return be
}

func TestConformance(t *testing.T) {
	t.Run("quick claims", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) idem.Backend { return newBackend(t) })
	})
	t.Run("script claims", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) idem.Backend {
			be := newBackend(t)
			idemredis.ScriptClaimsOnly(be)
			return be
		})
	})
	// Claims of both kinds on the same keys: tokens still only grow.
	t.Run("mixed claims", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) idem.Backend {
			rdb := redistest.Client(t)
			prefix := redistest.Prefix(t, rdb)
			quick, err := idemredis.New(rdb, idemredis.Options{Prefix: prefix})
			require.NoError(t, err)
			script, err := idemredis.New(rdb, idemredis.Options{Prefix: prefix})
			require.NoError(t, err)
			idemredis.ScriptClaimsOnly(script)
			return &mixed{Backend: quick, script: script}
		})
	})
}

// mixed claims keys alternately quickly and with the script; both
// backends share their keys.
type mixed struct {
	*idemredis.Backend
	script *idemredis.Backend
	n      atomic.Int64
}

func (m *mixed) Claim(ctx context.Context, key []byte, req idem.ClaimRequest) (idem.ClaimResult, error) {
	if m.n.Add(1)%2 == 0 {
		return m.script.Claim(ctx, key, req)
	}
	return m.Backend.Claim(ctx, key, req)
}

func (m *mixed) Close() error { return errors.Join(m.Backend.Close(), m.script.Close()) }

func TestPrefixWithBraceIsRefused(t *testing.T) {
	_, err := idemredis.New(redis.NewClient(&redis.Options{}), idemredis.Options{Prefix: "a{b}:"})
	require.ErrorIs(t, err, idem.ErrInvalidOptions)
}

func TestUnsupportedClientsAreRefused(t *testing.T) {
	_, err := idemredis.New(nil, idemredis.Options{})
	require.ErrorIs(t, err, idem.ErrInvalidOptions)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	_, err = idemredis.New(ring, idemredis.Options{})
	require.ErrorIs(t, err, idem.ErrInvalidOptions)
	assert.ErrorContains(t, err, "redis.Ring")
}

// TestModel runs the store on Redis against the reference model: every
// answer must be the same as the model's (and so as on Badger).
func TestModel(t *testing.T) {
	backendtest.RunModel(t, func(tb testing.TB) func() backend.Backend {
		rdb := redistest.Client(tb)
		prefix := redistest.Prefix(tb, rdb)
		return func() backend.Backend {
			be, err := idemredis.New(rdb, idemredis.Options{Prefix: prefix})
			require.NoError(tb, err)
			return be
		}
	})
}

// Now, the clock the store dates records by, follows the server's clock:
// never before it, and behind it by no more than a round trip.
func TestNowFollowsTheServerClock(t *testing.T) {
	rdb := redistest.Client(t)
	be, err := idemredis.New(rdb, idemredis.Options{Prefix: "unused:"})
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
			time.Sleep(600 * time.Millisecond) // old enough readings to be refreshed
		}
	}
	t.Logf("Now at most %v after the server's time read after it", worst)
	assert.Less(t, worst, 50*time.Millisecond)
}
