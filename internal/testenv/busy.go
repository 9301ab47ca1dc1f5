package testenv

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BusyProcessors keeps every processor busy until t ends, with four
// CPU-bound goroutines per GOMAXPROCS, as a service's own work can.
func BusyProcessors(t testing.TB) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for !stop.Load() {
			}
		})
	}
	t.Cleanup(func() {
		stop.Store(true)
		wg.Wait()
	})
}

// MedianLatency calls fn n times, one call after the other, and returns
// the median time a call took.
func MedianLatency(n int, fn func(i int)) time.Duration {
	took := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		fn(i)
		took[i] = time.Since(start)
	}
	slices.Sort(took)
	return took[n/2]
}
