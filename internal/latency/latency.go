// Package latency is a histogram of latencies for the project's benchmarks
// (idem bench, and the Go benchmarks that print percentiles).
package latency

import (
	"math"
	"math/bits"
	"sync"
	"time"
)

// Histogram counts latencies in log-linear buckets: 16 per power of two,
// about 4% wide. Add is for one goroutine; Merge is safe for concurrent use.
type Histogram struct {
	mu     sync.Mutex
	counts [64 * 16]uint64
	total  uint64
}

func bucketOf(d time.Duration) int {
	ns := uint64(max(d, 1))
	exp := 63 - bits.LeadingZeros64(ns)
	if exp < 4 {
		return int(ns)
	}
	return exp*16 + int(ns>>(exp-4))&15
}

func bucketValue(b int) time.Duration {
	if b < 64 {
		return time.Duration(b)
	}
	exp, frac := b/16, b%16
	return time.Duration((16 + uint64(frac)) << (exp - 4))
}

// Add counts one latency.
func (h *Histogram) Add(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.total++
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// Quantile returns the latency below which a share q of the counts lie.
func (h *Histogram) Quantile(q float64) time.Duration {
	want := uint64(math.Ceil(q * float64(h.total)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if c > 0 && seen >= want {
			return bucketValue(i)
		}
	}
	return 0
}
