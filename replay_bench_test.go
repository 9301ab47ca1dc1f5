package idem

import (
	"context"
	"testing"
)

// BenchmarkReplayHit measures a replay served from the cache: the path
// every retry of a hot key takes.
//
//	go test -run '^$' -bench ReplayHit .
func BenchmarkReplayHit(b *testing.B) {
	st := openTest(b, Options{InMemory: true, GCInterval: -1})
	sc := scopeTest(b, st, "bench", ScopeOptions{})
	ctx := context.Background()
	fn := func(context.Context) ([]byte, error) { return make([]byte, 256), nil }
	for range 2 { // the second call reads the record and caches it
		if _, err := sc.Do(ctx, "order-1001", nil, fn); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Do", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if res, err := sc.Do(ctx, "order-1001", nil, fn); err != nil || !res.Replayed {
				b.Fatal(err)
			}
		}
	})
	b.Run("DoAppend", func(b *testing.B) {
		b.ReportAllocs()
		dst := make([]byte, 0, 512)
		for b.Loop() {
			res, err := sc.DoAppend(ctx, dst[:0], "order-1001", nil, fn)
			if err != nil || !res.Replayed {
				b.Fatal(err)
			}
			dst = res.Value
		}
	})
}
