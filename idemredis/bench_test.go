package idemredis_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/idemkit/idem"
)

// BenchmarkCrossInstanceWait measures how long after the owner's result is
// stored a duplicate waiting on another instance gets it: the cost of
// waiting by polling (pollMin doubling to pollMax in scope.go), for work
// of several lengths.
//
//	go test -run '^$' -bench CrossInstanceWait ./idemredis
func BenchmarkCrossInstanceWait(b *testing.B) {
	for _, work := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond} {
		b.Run(fmt.Sprint("work=", work), func(b *testing.B) {
			stores, _ := instances(b, 2, idem.Options{})
			a, err := stores[0].Scope("orders", idem.ScopeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			w, err := stores[1].Scope("orders", idem.ScopeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			var delays []time.Duration
			for i := 0; b.Loop(); i++ {
				key := fmt.Sprint("k", i)
				started, stored := make(chan struct{}), make(chan time.Time, 1)
				go func() {
					_, err := a.Do(ctx, key, nil, func(context.Context) ([]byte, error) {
						close(started)
						time.Sleep(work)
						return []byte("v"), nil
					})
					if err != nil {
						b.Error(err)
					}
					stored <- time.Now()
				}()
				<-started
				res, err := w.Do(ctx, key, nil, func(context.Context) ([]byte, error) {
					b.Error("the waiter ran the work")
					return nil, nil
				})
				got := time.Now()
				if err != nil || !res.Replayed {
					b.Fatalf("waiter: %v, replayed %v", err, res.Replayed)
				}
				delays = append(delays, got.Sub(<-stored))
			}
			slices.Sort(delays)
			b.ReportMetric(float64(delays[len(delays)/2].Microseconds()), "p50-µs-after-stored")
			b.ReportMetric(float64(delays[len(delays)*99/100].Microseconds()), "p99-µs-after-stored")
		})
	}
}
