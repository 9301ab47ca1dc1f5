package bench

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one measured row.
type Config struct {
	Kind       Kind
	Workload   Workload
	Goroutines int
	Duration   time.Duration
	ValueSize  int
	Sync       bool
	RedisAddr  string // for the Redis targets
}

// Report is what one row measured.
type Report struct {
	Config
	Ops       uint64
	OpsPerSec float64
	Claimed   float64 // share of claims that created their key
	P50, P99  time.Duration
}

// Run measures one row in a fresh temporary directory, which it removes.
func Run(ctx context.Context, c Config) (Report, error) {
	dir, err := os.MkdirTemp("", "idem-bench-")
	if err != nil {
		return Report{}, err
	}
	defer os.RemoveAll(dir)
	t, keys, err := Prepare(ctx, c.Kind, c.Workload, Env{Dir: dir, Sync: c.Sync, RedisAddr: c.RedisAddr}, c.ValueSize)
	if err != nil {
		return Report{}, err
	}
	defer t.Close()

	var (
		ops, claimed atomic.Uint64
		hist         Histogram
		wg           sync.WaitGroup
		firstErr     error
		errOnce      sync.Once
	)
	stop := make(chan struct{})
	start := time.Now()
	for g := range c.Goroutines {
		wg.Go(func() {
			s := keys.Stream(uint64(g) + 1)
			var local Histogram
			var n, won uint64
			defer func() {
				ops.Add(n)
				claimed.Add(won)
				hist.Merge(&local)
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				key, value := s.Next(c.ValueSize)
				t0 := time.Now()
				ok, err := t.Claim(ctx, key, value)
				local.Add(time.Since(t0))
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				n++
				if ok {
					won++
				}
			}
		})
	}
	select {
	case <-time.After(c.Duration):
	case <-ctx.Done():
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return Report{}, fmt.Errorf("%s %s: %w", c.Kind, c.Workload, firstErr)
	}
	r := Report{Config: c, Ops: ops.Load(), OpsPerSec: float64(ops.Load()) / elapsed.Seconds()}
	if r.Ops > 0 {
		r.Claimed = float64(claimed.Load()) / float64(r.Ops)
	}
	r.P50, r.P99 = hist.Quantile(0.5), hist.Quantile(0.99)
	return r, ctx.Err()
}

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
