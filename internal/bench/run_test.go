package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHistogramQuantiles(t *testing.T) {
	var h, other Histogram
	for i := 1; i <= 1000; i++ {
		h.Add(time.Duration(i) * time.Microsecond)
	}
	other.Add(time.Hour)
	h.Merge(&other)
	assert.InEpsilon(t, float64(500*time.Microsecond), float64(h.Quantile(0.5)), 0.07)
	assert.InEpsilon(t, float64(990*time.Microsecond), float64(h.Quantile(0.99)), 0.07)
	assert.InEpsilon(t, float64(time.Hour), float64(h.Quantile(1)), 0.07)
	assert.Equal(t, time.Duration(3), bucketValue(bucketOf(3)))
}

func TestRunEveryTargetAndWorkload(t *testing.T) {
	ctx := context.Background()
	for _, kind := range Kinds {
		for _, w := range []Workload{Unique, Hot} {
			r, err := Run(ctx, Config{Kind: kind, Workload: w, Goroutines: 4, Duration: 50 * time.Millisecond, ValueSize: 64})
			require.NoError(t, err, "%s %s", kind, w)
			assert.Positive(t, r.Ops, "%s %s", kind, w)
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
