package bench

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem/idemredis/redistest"
)

// TestRunEveryTargetAndWorkload runs each check-and-set target briefly:
// new keys are all claimed, prefilled hot keys never are.
func TestRunEveryTargetAndWorkload(t *testing.T) {
	ctx := context.Background()
	for _, kind := range slices.Concat(Kinds, []Kind{IdemAppend}) {
		for _, w := range []Workload{Unique, Hot} {
			r, err := Run(ctx, Config{Kind: kind, Workload: w, Goroutines: 4, Duration: 50 * time.Millisecond, ValueSize: 64})
			require.NoError(t, err, "%s %s", kind, w)
			assert.Positive(t, r.Ops, "%s %s", kind, w)
			assert.Positive(t, r.CPUPerOp, "%s %s: the process's CPU per operation", kind, w)
			if w == Unique {
				assert.Equal(t, 1.0, r.Claimed, "%s: every new key is claimed", kind)
			} else {
				assert.Zero(t, r.Claimed, "%s: hot keys were prefilled", kind)
			}
			assert.Positive(t, r.P99)
		}
	}
	_, err := Run(ctx, Config{Kind: "nope", Workload: Unique, Goroutines: 1, Duration: time.Millisecond})
	assert.Error(t, err)
}

func TestBlindTargetWritesEveryKey(t *testing.T) {
	for _, kind := range Blind {
		r, err := Run(context.Background(), Config{Kind: kind, Workload: Unique, Goroutines: 4, Duration: 50 * time.Millisecond, ValueSize: 64})
		require.NoError(t, err, kind)
		assert.Positive(t, r.Ops, kind)
		assert.Equal(t, 1.0, r.Claimed, kind)
	}
}

// TestRedisRowsReportTheServersCPU runs the Redis targets on a real
// server: each row reports the server's CPU per operation beside its own.
func TestRedisRowsReportTheServersCPU(t *testing.T) {
	addr := redistest.Addr(t)
	for _, kind := range RedisKinds {
		r, err := Run(context.Background(), Config{Kind: kind, Workload: Unique, Goroutines: 4, Duration: 100 * time.Millisecond, ValueSize: 64, RedisAddr: addr})
		require.NoError(t, err, kind)
		assert.Positive(t, r.Ops, kind)
		assert.Positive(t, r.ServerCPUPerOp, "%s: the server's CPU per operation", kind)
	}
}
