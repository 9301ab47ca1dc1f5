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

// stallLimit is the median call under BusyProcessors that
// KeepsPaceWhenBusy fails: far above what a call costs (under 1 ms even
// with the race detector), far below a goroutine that waits for the
// scheduler to come round to it behind CPU-bound ones (tens of ms).
const stallLimit = 10 * time.Millisecond

// KeepsPaceWhenBusy calls fn 100 times, one call after the other, while
// every processor is busy (BusyProcessors), and fails t if a call fails
// or the median call takes stallLimit or more.
func KeepsPaceWhenBusy(t testing.TB, fn func(i int) error) {
	t.Helper()
	BusyProcessors(t)
	took := make([]time.Duration, 100)
	for i := range took {
		start := time.Now()
		if err := fn(i); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		took[i] = time.Since(start)
	}
	slices.Sort(took)
	median := took[len(took)/2]
	t.Logf("median call, every processor busy: %v", median)
	if median >= stallLimit {
		t.Errorf("median call %v, every processor busy: a call waits for the scheduler (limit %v)", median, stallLimit)
	}
}
