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
// stored a duplicate waiting on another instance gets it, for work of
// several lengths: woken through pub/sub (watch=true), or polling the key
// (watch=false, pollMin growing to pollMax in scope.go).
//
//	go test -run '^$' -bench CrossInstanceWait ./idemredis
func BenchmarkCrossInstanceWait(b *testing.B) {
	for _, watch := range []bool{true, false} {
		for _, work := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond} {
			b.Run(fmt.Sprintf("watch=%v/work=%v", watch, work), func(b *testing.B) {
				benchmarkWait(b, watch, work)
			})
		}
	}
}

func benchmarkWait(b *testing.B, watch bool, work time.Duration) {
	stores, backends := instances(b, 2, idem.Options{})
	backends[1].noWatch = !watch
	owner, waiter := scope(b, stores[0], idem.ScopeOptions{}), scope(b, stores[1], idem.ScopeOptions{})
	ctx := context.Background()
	var delays []time.Duration
	for i := 0; b.Loop(); i++ {
		key := fmt.Sprint("k", i)
		started, stored := make(chan struct{}), make(chan time.Time, 1)
		go func() {
			_, err := owner.Do(ctx, key, nil, func(context.Context) ([]byte, error) {
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
		res, err := waiter.Do(ctx, key, nil, func(context.Context) ([]byte, error) {
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
}
