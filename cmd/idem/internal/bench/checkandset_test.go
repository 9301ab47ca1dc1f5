package bench_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemkit/idem/cmd/idem/internal/bench"
	"github.com/idemkit/idem/idemredis/redistest"
)

// BenchmarkCheckAndSet compares idem (Do, Claim) with the baselines on the
// same workloads in one run: naive Badger (what users write by hand), a
// sharded in-memory map (the ceiling) and, for new keys, a blind Badger
// write (what the write alone costs); and idem on Redis with raw go-redis
// SET NX GET (when a Redis server is found, see idemredis/redistest). Rows
// are named sync=S/WORKLOAD/g=GOROUTINES/TARGET so that the targets of one
// setting stand together; compare their ops/s.
//
//	go test -run '^$' -bench CheckAndSet -benchtime 2s
func BenchmarkCheckAndSet(b *testing.B) {
	const valueSize = 256
	b.Cleanup(closeCurrent)
	for _, sync := range []bool{false, true} {
		for _, w := range bench.Workloads {
			for _, g := range []int{1, 8, 64} {
				for _, kind := range slices.Concat(bench.Kinds, bench.More, bench.RedisKinds) {
					if sync && !kind.Syncs() || !kind.Fits(w) {
						continue
					}
					name := fmt.Sprintf("sync=%v/%s/g=%d/%s", sync, w, g, kind)
					b.Run(name, func(sub *testing.B) {
						env := bench.Env{Sync: sync}
						if slices.Contains(bench.RedisKinds, kind) {
							env.RedisAddr = redistest.Addr(sub)
						}
						t, keys := prepared(sub, kind, w, env, valueSize)
						runParallel(sub, t, keys, g, valueSize)
					})
				}
			}
		}
	}
}

// prepared opens and prefills a target once per row: the testing package
// calls a row's function several times while it sizes b.N. The previous
// row's target is closed when the next row starts, and the last one when
// the benchmark ends.
var current struct {
	name string
	dir  string
	t    bench.Target
	keys *bench.Keys
}

func prepared(b *testing.B, kind bench.Kind, w bench.Workload, env bench.Env, valueSize int) (bench.Target, *bench.Keys) {
	b.Helper()
	if current.name == b.Name() {
		return current.t, current.keys
	}
	closeCurrent()
	b.StopTimer()
	dir, err := os.MkdirTemp("", "idem-bench-")
	if err != nil {
		b.Fatal(err)
	}
	env.Dir = dir
	t, keys, err := bench.Prepare(context.Background(), kind, w, env, valueSize)
	if err != nil {
		b.Fatal(err)
	}
	current.name, current.dir, current.t, current.keys = b.Name(), dir, t, keys
	b.StartTimer()
	return t, keys
}

func closeCurrent() {
	if current.t != nil {
		_ = current.t.Close()
		_ = os.RemoveAll(current.dir)
	}
	current.name, current.dir, current.t, current.keys = "", "", nil, nil
}

// runParallel splits b.N claims over g goroutines and reports ops/s and
// the share of claims that created their key.
func runParallel(b *testing.B, t bench.Target, keys *bench.Keys, g, valueSize int) {
	b.ReportAllocs()
	ctx := context.Background()
	var next, claimed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range g {
		wg.Go(func() {
			s := keys.Stream(uint64(i) + uint64(b.N)<<8)
			for next.Add(1) <= int64(b.N) {
				key, value := s.Next(valueSize)
				ok, err := t.Claim(ctx, key, value)
				if err != nil {
					b.Error(err)
					return
				}
				if ok {
					claimed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(claimed.Load())/float64(b.N), "claimed/op")
}
