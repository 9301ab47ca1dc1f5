package idem

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
)

// BenchmarkReplayHit measures a replay served from the cache: the path
// every retry of a hot key takes.
//
//	go test -run '^$' -bench ReplayHit .
func BenchmarkReplayHit(b *testing.B) {
	sc := cachedReplay(b, Options{InMemory: true, GCInterval: -1})
	b.Run("Do", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if res, err := sc.Do(context.Background(), "order-1001", nil, replayed); err != nil || !res.Replayed {
				b.Fatal(err)
			}
		}
	})
	b.Run("DoAppend", func(b *testing.B) { replayAppending(b, sc) })
}

// replayed is the work of the replay benchmarks: a 256-byte result.
func replayed(context.Context) ([]byte, error) { return make([]byte, 256), nil }

// cachedReplay opens a store with opts whose scope holds the result of
// "order-1001" in its cache.
func cachedReplay(b *testing.B, opts Options) *Scope {
	sc := scopeTest(b, openTest(b, opts), "bench", ScopeOptions{})
	for range 2 { // the second call reads the record and caches it
		if _, err := sc.Do(context.Background(), "order-1001", nil, replayed); err != nil {
			b.Fatal(err)
		}
	}
	return sc
}

// replayAppending replays "order-1001" with DoAppend into a reused buffer.
func replayAppending(b *testing.B, sc *Scope) {
	ctx := context.Background()
	b.ReportAllocs()
	dst := make([]byte, 0, 512)
	for b.Loop() {
		res, err := sc.DoAppend(ctx, dst[:0], "order-1001", nil, replayed)
		if err != nil || !res.Replayed {
			b.Fatal(err)
		}
		dst = res.Value
	}
}

// BenchmarkReplayWorkingSet measures replays from the cache spread at
// random over many keys, as retries of a busy service are: each one
// misses the processor's caches, unlike BenchmarkReplayHit's single key.
//
//	go test -run '^$' -bench ReplayWorkingSet .
func BenchmarkReplayWorkingSet(b *testing.B) {
	const keys = 100_000
	st := openTest(b, Options{InMemory: true, GCInterval: -1})
	sc := scopeTest(b, st, "bench", ScopeOptions{})
	ctx := context.Background()
	fn := func(context.Context) ([]byte, error) { return make([]byte, 256), nil }
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("order-%019d", i)
		for range 2 { // the second call reads the record and caches it
			if _, err := sc.Do(ctx, names[i], nil, fn); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var seed atomic.Uint64
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(seed.Add(1), 0))
		dst := make([]byte, 0, 512)
		for pb.Next() {
			res, err := sc.DoAppend(ctx, dst[:0], names[rng.IntN(keys)], nil, fn)
			if err != nil || !res.Replayed {
				b.Fatal(err)
			}
			dst = res.Value
		}
	})
}

// noopObserver is an Observer that does nothing: what the hook itself
// costs.
type noopObserver struct{}

func (noopObserver) Observe(context.Context, Event) {}

// BenchmarkReplayObserved measures a cached replay (DoAppend) on stores
// without an observer and with one that does nothing, in one run.
//
//	go test -run '^$' -bench ReplayObserved -count 5 .
func BenchmarkReplayObserved(b *testing.B) {
	for _, tc := range []struct {
		name string
		obs  Observer
	}{{"none", nil}, {"noop", noopObserver{}}} {
		b.Run(tc.name, func(b *testing.B) {
			replayAppending(b, cachedReplay(b, Options{InMemory: true, GCInterval: -1, Observer: tc.obs}))
		})
	}
}
