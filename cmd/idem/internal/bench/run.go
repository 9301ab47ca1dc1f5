package bench

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemkit/idem/internal/latency"
)

// Config is one measured row.
type Config struct {
	Kind        Kind
	Workload    Workload
	Goroutines  int
	Duration    time.Duration
	ValueSize   int
	Sync        bool
	RedisAddr   string // for the Redis targets
	PostgresURL string // for the Postgres targets
}

// Report is what one row measured.
type Report struct {
	Config
	Ops       uint64
	OpsPerSec float64
	Claimed   float64 // share of claims that created their key
	// CPUPerOp is the process's CPU time (user and system, every
	// goroutine: the engine's background work too) per operation; 0 where
	// the platform does not say. A server's CPU (Redis, Postgres) is not in it.
	CPUPerOp time.Duration
	// ServerCPUPerOp is the server's CPU time per operation, for targets
	// whose server reports it (Redis); 0 for the others, and where the
	// server refuses to say. On a server that others use too, their work
	// counts as well.
	ServerCPUPerOp time.Duration
	P50, P99       time.Duration
}

// Run measures one row in a fresh temporary directory, which it removes.
func Run(ctx context.Context, c Config) (Report, error) {
	dir, err := os.MkdirTemp("", "idem-bench-")
	if err != nil {
		return Report{}, err
	}
	defer os.RemoveAll(dir)
	t, keys, err := Prepare(ctx, c.Kind, c.Workload, Env{Dir: dir, Sync: c.Sync, RedisAddr: c.RedisAddr, PostgresURL: c.PostgresURL}, c.ValueSize)
	if err != nil {
		return Report{}, err
	}
	defer t.Close()

	var (
		ops, claimed atomic.Uint64
		hist         latency.Histogram
		wg           sync.WaitGroup
		firstErr     error
		errOnce      sync.Once
	)
	stop := make(chan struct{})
	server, _ := t.(serverTarget)
	var server0 time.Duration
	if server != nil {
		if server0, err = server.ServerCPU(ctx); err != nil {
			server = nil // INFO refused (a managed service, a renamed command): no figure
		}
	}
	cpu0 := processCPU()
	start := time.Now()
	for g := range c.Goroutines {
		wg.Go(func() {
			s := keys.Stream(uint64(g) + 1)
			var local latency.Histogram
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
	cpu := processCPU() - cpu0
	if firstErr != nil {
		return Report{}, fmt.Errorf("%s %s: %w", c.Kind, c.Workload, firstErr)
	}
	r := Report{Config: c, Ops: ops.Load(), OpsPerSec: float64(ops.Load()) / elapsed.Seconds()}
	if server != nil && r.Ops > 0 {
		if server1, err := server.ServerCPU(ctx); err == nil {
			r.ServerCPUPerOp = (server1 - server0) / time.Duration(r.Ops)
		}
	}
	if r.Ops > 0 {
		r.Claimed = float64(claimed.Load()) / float64(r.Ops)
		r.CPUPerOp = cpu / time.Duration(r.Ops)
	}
	r.P50, r.P99 = hist.Quantile(0.5), hist.Quantile(0.99)
	return r, ctx.Err()
}
