package latency

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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
