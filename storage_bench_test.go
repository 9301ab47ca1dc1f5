package idem_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/internal/latency"
)

// BenchmarkChurnDisk writes keys with a 2 s TTL from 8 goroutines for 12 s
// while the collector runs every second, then lets everything expire and
// collects. It reports the store's peak and final disk use (the goal: flat
// during the churn, at most 64 MiB at the end). One iteration is the whole
// scenario:
//
//	go test -run '^$' -bench ChurnDisk -benchtime 1x
func BenchmarkChurnDisk(b *testing.B) {
	for range b.N {
		dir := b.TempDir()
		st, err := idem.Open(idem.Options{Dir: dir, GCInterval: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		sc, err := st.Scope("churn", idem.ScopeOptions{TTL: 2 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		value := make([]byte, 256)
		var written atomic.Int64
		var peak atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					key := fmt.Sprintf("g%d-%d", g, i)
					if _, err := sc.Do(ctx, key, nil, func(context.Context) ([]byte, error) { return value, nil }); err != nil {
						b.Error(err)
						return
					}
					written.Add(1)
				}
			})
		}
		var samples []string
		sample := func() int64 {
			n := st.Stats().DiskBytes
			if n > peak.Load() {
				peak.Store(n)
			}
			return n
		}
		for s := 1; s <= 12; s++ {
			time.Sleep(time.Second)
			samples = append(samples, strconv.FormatInt(sample()>>20, 10))
		}
		close(stop)
		wg.Wait()
		time.Sleep(4 * time.Second) // every record has expired, for Badger too
		for range 2 {               // the second pass collects what the first one's deletions freed
			if _, err := st.GC(ctx); err != nil {
				b.Fatal(err)
			}
		}
		final := sample()
		b.ReportMetric(float64(written.Load())/12, "writes/s")
		b.ReportMetric(float64(peak.Load())/(1<<20), "peak-MiB")
		b.ReportMetric(float64(final)/(1<<20), "final-MiB")
		b.Logf("disk MiB each second of churn: %s; peak %d MiB, final %d MiB, %d records written",
			strings.Join(samples, " "), peak.Load()>>20, final>>20, written.Load())
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemoryMillion runs 1,000,000 Do calls with 100-byte values from
// 8 goroutines on a store with default options, sampling the process's
// anonymous memory (RssAnon) every 100 ms; it reports the peak, and VmHWM
// (which also counts Badger's memory-mapped files). Run it alone, in a
// fresh process:
//
//	go test -run '^$' -bench MemoryMillion -benchtime 1x
func BenchmarkMemoryMillion(b *testing.B) {
	for range b.N {
		st, err := idem.Open(idem.Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		sc, err := st.Scope("mem", idem.ScopeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		var peakAnon atomic.Int64
		done := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				if a := procStatus("RssAnon"); a > peakAnon.Load() {
					peakAnon.Store(a)
				}
				select {
				case <-done:
					return
				case <-t.C:
				}
			}
		}()
		ctx := context.Background()
		var next atomic.Int64
		start := time.Now()
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 7))
				value := make([]byte, 100)
				for {
					i := next.Add(1)
					if i > 1_000_000 {
						return
					}
					for j := range value {
						value[j] = byte(rng.Uint32())
					}
					key := fmt.Sprintf("tenant-%03d/%016x", i%1000, i)
					if _, err := sc.Do(ctx, key, nil, func(context.Context) ([]byte, error) { return value, nil }); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		close(done)
		<-sampled
		b.ReportMetric(1e6/elapsed.Seconds(), "do/s")
		b.ReportMetric(float64(peakAnon.Load())/(1<<20), "peak-RssAnon-MiB")
		b.ReportMetric(float64(procStatus("VmHWM"))/(1<<20), "VmHWM-MiB")
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// procStatus reads a "kB" field of /proc/self/status, in bytes (0 where
// there is no such file).
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, rest, ok := strings.Cut(s.Text(), ":")
		if ok && name == field {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkClaimLatencyDuringGC measures new-key Do latency from 8
// goroutines on a store holding 200,000 expired records, first for 2 s
// with no collection running, then for as long as one collects them,
// reclaiming included. It reports both p99s and both slowest calls.
//
//	go test -run '^$' -bench ClaimLatencyDuringGC -benchtime 1x
func BenchmarkClaimLatencyDuringGC(b *testing.B) {
	for range b.N {
		clock := &stepClock{t: time.Now()}
		st, err := idem.Open(idem.Options{Dir: b.TempDir(), Now: clock.Now, GCInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		sc, err := st.Scope("gc", idem.ScopeOptions{TTL: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		value := make([]byte, 100)
		fill := func(prefix string, n int) {
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := g; i < n; i += 8 {
						if _, err := sc.Do(ctx, fmt.Sprint(prefix, i), nil, func(context.Context) ([]byte, error) { return value, nil }); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		}
		fill("old-", 200_000)
		clock.Advance(time.Minute)

		// measure runs new-key calls from 8 goroutines until stop is
		// closed, and returns their p99 and the slowest.
		measure := func(prefix string, stop <-chan struct{}) (p99, slowest time.Duration) {
			var hist latency.Histogram
			var next, worst atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					var local latency.Histogram
					for {
						select {
						case <-stop:
							hist.Merge(&local)
							return
						default:
						}
						key := fmt.Sprint(prefix, next.Add(1))
						t0 := time.Now()
						if _, err := sc.Do(ctx, key, nil, func(context.Context) ([]byte, error) { return value, nil }); err != nil {
							b.Error(err)
							return
						}
						d := time.Since(t0)
						local.Add(d)
						for w := worst.Load(); int64(d) > w && !worst.CompareAndSwap(w, int64(d)); w = worst.Load() {
						}
					}
				})
			}
			wg.Wait()
			return hist.Quantile(0.99), time.Duration(worst.Load())
		}
		idleStop := make(chan struct{})
		time.AfterFunc(2*time.Second, func() { close(idleStop) })
		idle, idleWorst := measure("idle-", idleStop)
		var stats idem.GCStats
		gcDone := make(chan struct{})
		go func() {
			defer close(gcDone)
			var err error
			if stats, err = st.GC(ctx); err != nil {
				b.Error(err)
			}
		}()
		// The whole collection: its sweep, then reclaiming (a memtable
		// flush and value-log rewrites, during which commits wait).
		during, duringWorst := measure("during-", gcDone)
		b.ReportMetric(float64(idle.Microseconds()), "p99-idle-µs")
		b.ReportMetric(float64(during.Microseconds()), "p99-gc-µs")
		b.ReportMetric(float64(idleWorst.Microseconds()), "max-idle-µs")
		b.ReportMetric(float64(duringWorst.Microseconds()), "max-gc-µs")
		b.Logf("collection deleted %d records in %v", stats.Deleted, stats.Duration)
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// stepClock is a clock that can be moved forward.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
