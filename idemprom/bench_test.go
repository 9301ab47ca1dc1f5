package idemprom_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemprom"
)

// BenchmarkReplay compares a cached replay without an observer and with
// the Prometheus Collector, in one run.
//
//	go test -run '^$' -bench Replay -count 5 ./idemprom
func BenchmarkReplay(b *testing.B) {
	for _, observed := range []bool{false, true} {
		name := "none"
		opts := idem.Options{InMemory: true, GCInterval: -1}
		if observed {
			name, opts.Observer = "prometheus", idemprom.New()
		}
		b.Run(name, func(b *testing.B) {
			st, err := idem.Open(opts)
			require.NoError(b, err)
			defer st.Close()
			sc, err := st.Scope("payments", idem.ScopeOptions{})
			require.NoError(b, err)
			ctx := context.Background()
			fn := func(context.Context) ([]byte, error) { return make([]byte, 256), nil }
			for range 2 {
				_, err := sc.Do(ctx, "order-1001", nil, fn)
				require.NoError(b, err)
			}
			dst := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				res, err := sc.DoAppend(ctx, dst[:0], "order-1001", nil, fn)
				if err != nil || !res.Replayed {
					b.Fatal(err)
				}
				dst = res.Value
			}
		})
	}
}
